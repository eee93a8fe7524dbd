"""Where points come from: the simulator, a CSV file replayed in order, or stdin.

Each source yields :class:`~anomaly.simulate.Point` for a readable line and
:class:`~anomaly.runner.Rejected` for one that is not, so nothing disappears.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import SimulatorConfig
from .data import parse_timestamp
from .runner import Rejected
from .simulate import Point, Simulator

TRUE = {"1", "true", "yes", "anomaly"}


def simulator_source(config: SimulatorConfig, seed: int, start_index: int) -> Iterator[Point]:
    """Yield the built-in simulator's labelled points with anomalies, forever."""
    return Simulator(config, seed=seed, anomalies=True, start_index=start_index).points()


def _label(text: str | None) -> bool | None:
    return None if text in (None, "") else text.strip().lower() in TRUE


def parse_line(line: str, position: int, clock: float, interval: float) -> Point | Rejected:
    """Parse ``timestamp,value``, a bare ``value``, or a JSON object with those keys.

    A bare value is stamped ``clock + interval`` (the next grid point after ``clock``).
    """
    text = line.strip()
    if not text:
        return Rejected(line, "empty line", position)
    try:
        if text.startswith("{"):
            record = json.loads(text)
            if not isinstance(record, dict) or "value" not in record:
                return Rejected(line, "JSON line without a 'value'", position)
            stamp = record.get("timestamp")
            value = float(record["value"])
            stamp = parse_timestamp(str(stamp)) if stamp is not None else clock + interval
            return Point(stamp, value, _label(str(record["label"])) if "label" in record else None)
        fields = next(csv.reader([text]))
        if len(fields) == 1:
            return Point(clock + interval, float(fields[0]))
        if len(fields) in (2, 3):
            return Point(parse_timestamp(fields[0]), float(fields[1]),
                         _label(fields[2]) if len(fields) == 3 else None)
        return Rejected(line, f"expected 1 to 3 fields, got {len(fields)}", position)
    except (ValueError, TypeError, StopIteration, json.JSONDecodeError) as exc:
        return Rejected(line, f"unparsable: {exc}", position)


def text_source(lines: Iterable[str], interval: float, start: float) -> Iterator[Point | Rejected]:
    """Yield points from text lines (stdin); a header line ``timestamp,value`` is skipped."""
    clock = start
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.strip().lower().startswith("timestamp"):
            continue
        item = parse_line(line.rstrip("\n"), number, clock, interval)
        if isinstance(item, Point):
            clock = max(clock, item.timestamp)  # an out-of-order line must not turn back the clock
        yield item


def csv_source(path: str | Path, time_column: str = "timestamp", value_column: str = "value",
               label_column: str = "label") -> Iterator[Point | Rejected]:
    """Yield points of a CSV file in file order (line numbers count the header as 1).

    Raises ``ValueError`` at once when the header lacks the time or value column.
    """
    handle = open(path, newline="")
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    for column in (time_column, value_column):
        if column not in header:
            handle.close()
            raise ValueError(f"{path}: no column {column!r} in the header {header}")

    def rows() -> Iterator[Point | Rejected]:
        with handle:
            for number, row in enumerate(reader, start=2):
                raw = ",".join("" if v is None else str(v) for v in row.values())
                try:
                    yield Point(parse_timestamp(row[time_column] or ""), float(row[value_column]),
                                _label(row.get(label_column)))
                except (TypeError, ValueError) as exc:
                    yield Rejected(raw, f"unparsable: {exc}", number)

    return rows()


def stdin_source(interval: float, start: float) -> Iterator[Point | Rejected]:
    """Yield points from standard input, one line at a time as they arrive."""
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", line_buffering=True)
    return text_source(stream, interval, start)


def paced(items: Iterable, rate_hz: float) -> Iterator:
    """Yield ``items`` no faster than ``rate_hz`` per second (0: as fast as possible)."""
    if rate_hz <= 0:
        yield from items
        return
    step = 1.0 / rate_hz
    due = time.monotonic()
    for item in items:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due = max(due + step, time.monotonic() - step)
        yield item
