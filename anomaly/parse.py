"""Text to points: one line at a time (live input) or a block of CSV lines at once (replay).

Both follow the same rules (:func:`anomaly.data.parse_timestamp`, Python's ``float``), and
every line ends as a point or as a :class:`~anomaly.records.Rejected` with its reason. The
block parser takes fast vectorised routes where they give the same answer, for the common
timestamp layout ``YYYY-MM-DD HH:MM:SS`` and for epoch numbers, and the per-line rules for
every other row, so a CSV is read at about a million lines per second.
"""

from __future__ import annotations

import csv
import json

import numpy as np

from .data import epoch_seconds, parse_timestamp
from .records import Chunk, Rejected
from .simulate import Point

TRUE = {"1", "true", "yes", "anomaly"}
MAX_LINE = 1 << 20  # characters; a longer line is rejected, and only its start is kept
SHOWN = 200  # characters of a too-long line kept in its quarantine record
ISO_LENGTH = 19  # YYYY-MM-DD HH:MM:SS
ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
ISO_SEPARATORS = {4: "-", 7: "-", 13: ":", 16: ":"}


def label(text: str | None) -> bool | None:
    """Return the truth a label column holds: ``None`` when empty, else whether it says anomaly."""
    return None if text in (None, "") else text.strip().lower() in TRUE


def parse_line(line: str, position: int, clock: float, interval: float, time_format: str = "auto") -> Point | Rejected:
    """Parse ``timestamp,value``, a bare ``value``, or a JSON object with those keys.

    A bare value is stamped ``clock + interval`` (the next grid point after ``clock``).
    """
    if len(line) > MAX_LINE:
        return _too_long(line, position)
    text = line.strip()
    if not text:
        return Rejected(line, "empty line", position)
    try:
        if text.startswith("{"):
            record = json.loads(text)
            if not isinstance(record, dict) or "value" not in record:
                return Rejected(line, "JSON line without a 'value'", position)
            stamp = record.get("timestamp")
            if record["value"] in (None, ""):
                return Rejected(line, "missing value", position)
            value = float(record["value"])
            stamp = parse_timestamp(str(stamp), time_format) if stamp is not None else clock + interval
            return Point(stamp, value, label(str(record["label"])) if "label" in record else None)
        fields = next(csv.reader([text]))
        if len(fields) == 1:
            return Point(clock + interval, float(fields[0]))
        if len(fields) in (2, 3) and not fields[1].strip():
            return Rejected(line, "missing value", position)
        if len(fields) in (2, 3):
            return Point(parse_timestamp(fields[0], time_format), float(fields[1]),
                         label(fields[2]) if len(fields) == 3 else None)
        return Rejected(line, f"expected 1 to 3 fields, got {len(fields)}", position)
    except (ValueError, TypeError, StopIteration, json.JSONDecodeError) as exc:
        return Rejected(line, f"unparsable: {exc}", position)


def _reason(stamp: str, value: str, time_error: str | None, value_error: str | None) -> str:
    """Return the quarantine reason of a row whose timestamp or value could not be read."""
    if time_error:
        return "missing timestamp" if not stamp.strip() else f"unparsable: {time_error}"
    return "missing value" if not value.strip() else f"unparsable: value: {value_error}"


def _too_long(line: str, position: int) -> Rejected:
    return Rejected(line[:SHOWN] + "...", f"line too long (over {MAX_LINE:,} characters)", position)


def _iso_seconds(texts: list[str]) -> np.ndarray | None:
    """Epoch seconds of ``YYYY-MM-DD HH:MM:SS`` (or ``T``) texts, all of them, or ``None``.

    The layout, the digits and the ranges of hour, minute and second are checked first,
    so numpy's parser sees only texts that ``datetime.fromisoformat`` reads the same way;
    an impossible date (February 30) makes numpy refuse the block.
    """
    if not texts or any(len(t) != ISO_LENGTH for t in texts):
        return None
    codes = np.array(texts, dtype=f"U{ISO_LENGTH}").view(np.uint32).reshape(len(texts), ISO_LENGTH)
    digits = codes[:, ISO_DIGITS].astype(np.int64) - ord("0")
    if ((digits < 0) | (digits > 9)).any():
        return None
    if any((codes[:, i] != ord(c)).any() for i, c in ISO_SEPARATORS.items()):
        return None
    if ((codes[:, 10] != ord(" ")) & (codes[:, 10] != ord("T"))).any():
        return None
    year = digits[:, :4] @ np.array([1000, 100, 10, 1])
    hour, minute, second = (digits[:, 8:14:2] * 10 + digits[:, 9:14:2]).T
    if (year < 1).any() or (hour > 23).any() or (minute > 59).any() or (second > 59).any():
        return None  # datetime has no year 0; numpy would read it
    try:
        return np.array(texts, dtype="datetime64[s]").astype(np.int64).astype(np.float64)
    except ValueError:
        return None


def parse_timestamps(texts: list[str], form: str = "auto") -> tuple[np.ndarray, dict[int, str]]:
    """Return epoch seconds ``(n,)`` of ``texts`` in ``form`` (NaN where unreadable) and each one's error.

    ``form`` is one of :data:`anomaly.data.TIME_FORMATS`; the rules are those of
    :func:`anomaly.data.parse_timestamp`.
    """
    stamps = _iso_seconds(texts) if form in ("auto", "iso") else None
    if stamps is not None:
        return stamps, {}
    stamps = np.full(len(texts), np.nan)
    errors: dict[int, str] = {}
    numbers = None
    if form != "iso":
        try:  # epoch numbers, read as Python reads them
            numbers = np.fromiter(map(float, texts), np.float64, len(texts))
        except ValueError:
            pass
    if numbers is not None and np.isfinite(numbers).all():
        return epoch_seconds(numbers, form), {}
    for i, text in enumerate(texts):  # the per-line rules, with their messages
        try:
            stamps[i] = parse_timestamp(text, form)
        except ValueError as exc:
            errors[i] = str(exc)
    return stamps, errors


def parse_values(texts: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Return ``float`` of each text ``(n,)`` (NaN where unreadable) and the error of each unreadable one."""
    try:
        return np.fromiter(map(float, texts), np.float64, len(texts)), {}
    except ValueError:
        pass
    values = np.full(len(texts), np.nan)
    errors: dict[int, str] = {}
    for i, text in enumerate(texts):
        try:
            values[i] = float(text)
        except ValueError as exc:
            errors[i] = str(exc)
    return values, errors


def split_fields(line: str) -> list[str]:
    """Return the CSV fields of one line (quotes honoured; a line never spans two records)."""
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]), [])


def parse_csv_lines(lines: list[str], first_position: int, n_fields: int, time_index: int,
                    value_index: int, label_index: int | None = None, time_format: str = "auto") -> Chunk:
    """Parse consecutive CSV data lines (newlines stripped) into a :class:`Chunk`.

    ``first_position`` is the line number of ``lines[0]``. A line with another number of
    fields than the header, or whose timestamp or value cannot be read, is rejected.
    """
    text = "\n".join(lines)
    rejected = []
    commas = [line.count(",") for line in lines]
    if (lines and '"' not in text and min(commas) == max(commas) == n_fields - 1
            and max(map(len, lines)) <= MAX_LINE):
        # the common, clean case: one split of the whole block, columns by slicing (no list per row)
        flat = text.replace("\n", ",").split(",")
        columns = [flat[i::n_fields] for i in range(n_fields)]
        raws, positions = lines, range(first_position, first_position + len(lines))
    else:
        raws, positions, rows = [], [], []
        for offset, line in enumerate(lines):
            position = first_position + offset
            if len(line) > MAX_LINE:
                rejected.append(_too_long(line, position))
                continue
            fields = split_fields(line)
            if len(fields) == n_fields:
                rows.append(fields)
                raws.append(line)
                positions.append(position)
            elif not line.strip():
                rejected.append(Rejected(line, "empty line", position))
            else:
                rejected.append(Rejected(line, f"unparsable: expected {n_fields} fields, got {len(fields)}",
                                         position))
        columns = [list(column) for column in zip(*rows)] if rows else [[] for _ in range(n_fields)]
    stamps, time_errors = parse_timestamps(columns[time_index], time_format)
    values, value_errors = parse_values(columns[value_index])
    labels = [label(text) for text in columns[label_index]] if label_index is not None else None
    chunk = Chunk(stamps, values, np.array(positions, dtype=np.int64), raws, labels)
    if time_errors or value_errors:
        bad = np.zeros(len(raws), dtype=bool)
        for i in sorted(set(time_errors) | set(value_errors)):
            bad[i] = True
            rejected.append(Rejected(raws[i], _reason(columns[time_index][i], columns[value_index][i],
                                                      time_errors.get(i), value_errors.get(i)), positions[i]))
        chunk = chunk.take(~bad)
    chunk.rejected = sorted(rejected, key=lambda r: r.position)
    return chunk
