"""Where points come from: the simulator, a CSV file replayed in order, or stdin; and a CSV history read whole.

Every source yields :class:`~anomaly.io.records.Chunk` objects: replay reads thousands of
lines per chunk (one vectorised pass each), a live source (stdin, or any source paced at a
rate) one point per chunk. Lines that cannot be read travel in ``chunk.rejected``, so
nothing disappears.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import SimulatorConfig
from ..simulate import Point, Simulator
from .parse import MAX_LINE, SHOWN, line_fields, parse_csv_lines, parse_line
from .records import Chunk, Rejected

REPLAY_BYTES = 1 << 20  # text read per replay chunk: about 30,000 lines of timestamp,value


def simulator_chunks(config: SimulatorConfig, seed: int, start_index: int, size: int = 1) -> Iterator[Chunk]:
    """Yield the built-in simulator's labelled stream with anomalies, ``size`` points per chunk, forever."""
    simulator = Simulator(config, seed=seed, anomalies=True, start_index=start_index)
    position = 1
    while True:
        series = simulator.generate(size)
        yield Chunk(series.timestamps, series.values, np.arange(position, position + size),
                    labels=series.labels.tolist(), kinds=series.kinds.tolist())
        position += size


def _point_chunk(item, position: int, line: str) -> Chunk:
    if isinstance(item, Point):
        return Chunk(np.array([item.timestamp]), np.array([item.value]), np.array([position]), [line],
                     None if item.label is None else [item.label],
                     series=None if item.series is None else [item.series])
    return Chunk(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), [], rejected=[item])


class LineReader:
    """Turns the text lines of one live input into chunks, keeping its line count and clock.

    Lines hold ``timestamp,value``, a bare value (stamped one ``interval`` after the latest
    point) or a JSON object; see :func:`anomaly.io.parse.parse_line`. A first line that starts
    with ``timestamp`` is a header. Line numbers count from 1.
    """

    def __init__(self, interval: float, start: float, time_format: str = "auto", max_line: int = MAX_LINE):
        self.interval = interval
        self.clock = start
        self.time_format = time_format
        self.max_line = max_line  # characters; a longer line is rejected (and only its start kept)
        self.lines = 0

    def chunk(self, lines: list[str]) -> Chunk | None:
        """Return the chunk of ``lines`` (points and rejects), or ``None`` when there is nothing (a header)."""
        items = []
        for line in lines:
            self.lines += 1
            if self.lines == 1 and line[:100].strip().lstrip("\ufeff").lower().startswith("timestamp"):
                continue
            if isinstance(line, TooLong) or len(line) > self.max_line:
                item = Rejected(line[:SHOWN] + "...", f"line too long (over {self.max_line:,} characters)", self.lines)
            else:
                item = parse_line(line, self.lines, self.clock, self.interval, self.time_format)
            if isinstance(item, Point):
                self.clock = max(self.clock, item.timestamp)  # an out-of-order line must not turn back the clock
            items.append(_point_chunk(item, self.lines, line))
        if not items:
            return None
        return Chunk.concat(items) if len(items) > 1 else items[0]


def text_chunks(batches: Iterable[list[str]], interval: float, start: float,
                time_format: str = "auto") -> Iterator[Chunk]:
    """Yield one chunk per batch of text lines (see :class:`LineReader`)."""
    reader = LineReader(interval, start, time_format)
    for lines in batches:
        if (chunk := reader.chunk(lines)) is not None:
            yield chunk


class TooLong(str):
    """The start of a line that ran past the longest line allowed: rejected, never parsed."""


class LineSplitter:
    """Cuts arriving bytes into text lines; a line longer than ``max_line`` bytes keeps only its start.

    Pieces of an unfinished line are joined once it ends, so a long line costs linear time,
    and no more than ``max_line`` bytes of one line are ever held.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self._partial: list[bytes] = []
        self._size = 0  # bytes of the unfinished line, counting what was not kept
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        """Return the lines that ``data`` completes (without their line ends); too long ones as :class:`TooLong`."""
        *complete, tail = data.split(b"\n")
        lines = []
        if complete and self._size:
            self._add(complete.pop(0))
            lines.append(self._take())
        if len(data) <= self.max_line:  # the common case: no line in it can be too long
            lines += [_decode(piece) for piece in complete]
        else:
            for piece in complete:
                self._add(piece)
                lines.append(self._take())
        self._add(tail)
        return lines

    def end(self) -> list[str]:
        """Return the last line if the input ended without a line end."""
        return [self._take()] if self._size else []

    def _add(self, piece: bytes) -> None:
        if self._size <= self.max_line:  # beyond it the line is rejected anyway: keep no more of it
            self._partial.append(piece[:self.max_line + 1 - self._size])
        self._size += len(piece)

    def _take(self) -> str:
        line = _decode(b"".join(self._partial))
        too_long = self._size > self.max_line
        self._partial, self._size = [], 0
        return TooLong(line) if too_long else line


def arriving_lines(fd: int, most: int, read_bytes: int = 1 << 16) -> Iterator[list[str]]:
    """Yield the complete lines that have arrived on file descriptor ``fd``, at most ``most`` at a time.

    ``os.read`` waits for input, then returns everything already queued: a trickle of
    points comes out one line at a time (lowest latency), a burst as one batch (scored in
    one pass). No reader thread: one would compete with scoring for the GIL.
    """
    splitter, pending, ended = LineSplitter(), [], False
    while pending or not ended:
        while not pending and not ended:  # wait for one complete line, or the end of input
            data = os.read(fd, read_bytes)
            pending = splitter.feed(data) if data else splitter.end()
            ended = not data
        batch, pending = pending[:most], pending[most:]
        if batch:
            yield batch


def _decode(line: bytes) -> str:
    # undecodable bytes stay visible as \xNN in the quarantine, instead of becoming U+FFFD
    return line.decode("utf-8", errors="backslashreplace").rstrip("\r")


def stdin_chunks(interval: float, start: float, most: int = 8192, time_format: str = "auto") -> Iterator[Chunk]:
    """Yield chunks from standard input as lines arrive (see :func:`arriving_lines`)."""
    return text_chunks(arriving_lines(sys.stdin.fileno(), most), interval, start, time_format)


def csv_header(path: str | Path) -> list[str]:
    """Return the column names of a CSV file's header (empty when it cannot be read)."""
    with open(path, encoding="utf-8-sig", errors="backslashreplace", newline="\n") as handle:
        header = line_fields(handle.readline(MAX_LINE + 2).rstrip("\n"))
    return [] if isinstance(header, str) else [name.strip() for name in header]


def csv_chunks(path: str | Path, time_column: str = "timestamp", value_column: str = "value",
               label_column: str = "label", chunk_bytes: int = REPLAY_BYTES,
               time_format: str = "auto", series_column: str | None = None) -> Iterator[Chunk]:
    """Yield the points of a CSV file in file order; line numbers count the header as 1.

    ``chunk_bytes`` of text are parsed together (0: one line per chunk, for paced replay).
    ``series_column``: the column naming each point's series (``chunk.series``, for
    :mod:`anomaly.online.keyed`); ``None`` reads one series, whatever the header holds.
    Raises ``ValueError`` at once when the header lacks the time, value or series column.
    """
    # a BOM is not part of the header; undecodable bytes stay visible (\xNN) in the quarantine; only \n ends a
    # line (a lone \r inside one is the parser's to reject, not a line end)
    handle = open(path, encoding="utf-8-sig", errors="backslashreplace", newline="\n")
    header = line_fields(handle.readline(MAX_LINE + 2).rstrip("\n"))
    if isinstance(header, str):
        handle.close()
        raise ValueError(f"{path}: the header line cannot be read: {header}")
    header = [name.strip() for name in header]
    for column in (time_column, value_column) + ((series_column,) if series_column else ()):
        if column not in header:
            handle.close()
            raise ValueError(f"{path}: no column {column!r} in the header {header}; "
                             "choose columns with --time-column/--value-column")
    layout = (len(header), header.index(time_column), header.index(value_column),
              header.index(label_column) if label_column in header else None, time_format,
              header.index(series_column) if series_column else None)

    def blocks() -> Iterator[list[str]]:
        if chunk_bytes <= 0:
            for line in handle:
                yield [line.rstrip("\n")]
            return
        partial: list[str] = []  # the start of a line that has not ended yet
        while text := handle.read(chunk_bytes):
            cut = text.rfind("\n")
            if cut < 0:
                partial.append(text)
                continue
            yield ("".join(partial) + text[:cut]).replace("\r\n", "\n").split("\n")
            partial = [text[cut + 1:]]
        if tail := "".join(partial):
            yield [tail]

    def chunks() -> Iterator[Chunk]:
        position = 2
        with handle:
            for lines in blocks():
                yield parse_csv_lines(lines, position, *layout)
                position += len(lines)

    return chunks()


def limited(chunks: Iterator[Chunk], limit: int | None) -> Iterator[Chunk]:
    """Yield ``chunks`` up to ``limit`` input items (points plus rejected lines) in input order."""
    if limit is None:
        yield from chunks
        return
    if limit <= 0:
        getattr(chunks, "close", lambda: None)()
        return
    left = limit
    try:
        for chunk in chunks:
            size = len(chunk) + len(chunk.rejected)
            if size > left:
                order = sorted([*chunk.positions.tolist(), *(r.position for r in chunk.rejected)])
                cutoff = order[left - 1]
                rejected = [r for r in chunk.rejected if r.position <= cutoff]
                chunk = chunk.take(chunk.positions <= cutoff)
                chunk.rejected, size = rejected, left
            left -= size
            yield chunk
            if left <= 0:
                return
    finally:
        getattr(chunks, "close", lambda: None)()  # release the file now, not at garbage collection


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


@dataclass(frozen=True)
class History:
    """A training history: ``(n,)`` epoch seconds and ``(n,)`` values, in file order."""

    timestamps: np.ndarray
    values: np.ndarray
    skipped: int = 0  # rows that could not be read, or held a non-finite value
    reasons: dict[str, int] = field(default_factory=dict)  # how many rows were skipped for each reason


def read_csv(path: str | Path, time_column: str = "timestamp", value_column: str = "value",
             head: int | None = None, time_format: str = "auto") -> History:
    """Read a CSV with a header into a :class:`History`, by the rules every source follows (:mod:`anomaly.io.parse`).

    ``head`` counts data rows, read or not. Rows with an unreadable timestamp or value are
    skipped and counted by reason. Raises ``ValueError`` naming the columns when the header
    lacks them, ``OSError`` when the file cannot be read.
    """
    timestamps, values, reasons = [], [], Counter()
    for chunk in limited(csv_chunks(path, time_column, value_column, time_format=time_format), head):
        reasons.update(rejected.reason.split(":")[0] for rejected in chunk.rejected)
        finite = np.isfinite(chunk.values)
        if not finite.all():
            reasons["non-finite value"] += int((~finite).sum())
        timestamps.append(chunk.timestamps[finite])
        values.append(chunk.values[finite])
    joined = (np.concatenate(timestamps) if timestamps else np.empty(0),
              np.concatenate(values) if values else np.empty(0))
    return History(*joined, sum(reasons.values()), dict(reasons))


def read_series(path: str | Path, series_column: str, time_column: str = "timestamp", value_column: str = "value",
                head: int | None = None, time_format: str = "auto") -> tuple[dict[str, History], History]:
    """Read a CSV of many series (``series_column`` names each row's) into one :class:`History` per series.

    ``head`` counts each series' rows. Rows that cannot be read name no trustworthy series:
    they are counted in the second value returned (a :class:`History` without points).
    """
    parts: dict[str, tuple[list, list]] = {}
    rows: Counter = Counter()
    unreadable = Counter()
    for chunk in csv_chunks(path, time_column, value_column, time_format=time_format, series_column=series_column):
        unreadable.update(rejected.reason.split(":")[0] for rejected in chunk.rejected)
        for key, part in chunk.by_series().items():
            take = len(part) if head is None else max(head - rows[key], 0)
            rows[key] += min(take, len(part))
            stamps, values = parts.setdefault(key, ([], []))
            stamps.append(part.timestamps[:take])
            values.append(part.values[:take])
    histories = {}
    for key, (stamps, values) in parts.items():
        stamps, values = np.concatenate(stamps), np.concatenate(values)
        finite = np.isfinite(values)
        skipped = int((~finite).sum())
        histories[key] = History(stamps[finite], values[finite], skipped,
                                 {"non-finite value": skipped} if skipped else {})
    return histories, History(np.empty(0), np.empty(0), sum(unreadable.values()), dict(unreadable))
