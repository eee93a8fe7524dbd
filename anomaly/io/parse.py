"""Text to points: the one set of rules every source reads lines by.

A CSV file, stdin, a TCP client and ``train.py --data`` all go through these functions,
one line at a time (:func:`parse_line`, live input) or a block of CSV lines at once
(:func:`parse_csv_lines`, replay and training). They never raise: every line ends as a
point or as a :class:`~anomaly.io.records.Rejected` with its reason. The rules:

- a line is at most ``MAX_LINE`` characters, a field at most ``MAX_FIELD``; a line end is
  ``\n`` (a ``\r`` before it is dropped, CRLF), so a ``\r`` anywhere else rejects the line
  (it would split it in two for some readers and not for others); a byte-order mark at the
  start of a line is dropped;
- fields are separated by commas, double quotes honoured (:func:`split_fields`);
- a JSON line is an object nested at most ``MAX_JSON_DEPTH`` deep; its ``value`` is a
  number or a text holding one, never ``true`` or ``null``;
- numbers are plain decimal or exponent forms (:func:`anomaly.io.data.number`), timestamps
  ISO 8601 or epoch numbers within the years 1 to 9999 (:func:`anomaly.io.data.parse_timestamp`).

The block parser takes fast vectorised routes where they give the same answer, for the
common timestamp layout ``YYYY-MM-DD HH:MM:SS`` and for epoch numbers, and the per-line
rules for every other row, so a CSV is read at about a million lines per second.
"""

from __future__ import annotations

import csv
import json

import numpy as np

from ..simulate import Point
from .data import FIRST_EPOCH_S, LAST_EPOCH_S, epoch_seconds, number, parse_timestamp, shown
from .records import Chunk, Rejected

TRUE = {"1", "true", "yes", "anomaly"}
MAX_LINE = 1 << 20  # characters; a longer line is rejected, and only its start is kept
MAX_FIELD = 1000  # characters of one CSV field (a timestamp, a value, a label)
MAX_JSON_DEPTH = 16  # objects and arrays inside each other in one JSON line
SHOWN = 200  # characters of a too-long line kept in its quarantine record
ISO_LENGTH = 19  # YYYY-MM-DD HH:MM:SS
ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
ISO_SEPARATORS = {4: "-", 7: "-", 13: ":", 16: ":"}
BOM = "\ufeff"


def label(text: str | None) -> bool | None:
    """Return the truth a label column holds: ``None`` when empty, else whether it says anomaly."""
    return None if text in (None, "") else text.strip().lower() in TRUE


def line_fields(line: str) -> list[str] | str:
    """Return the CSV fields of one line under the line rules, or the reason it breaks them."""
    if len(line) > MAX_LINE:
        return f"line too long (over {MAX_LINE:,} characters)"
    if line.endswith("\r"):
        line = line[:-1]
    if "\r" in line:
        return "carriage return inside the line"
    line = line.lstrip(BOM)
    if not line.strip():
        return "empty line"
    try:
        fields = split_fields(line)
    except csv.Error as exc:
        return f"unparsable: {exc}"
    if max(map(len, fields)) > MAX_FIELD:
        return f"field too long (over {MAX_FIELD:,} characters)"
    return fields


def parse_line(line: str, position: int, clock: float, interval: float, time_format: str = "auto") -> Point | Rejected:
    """Parse ``timestamp,value[,label]``, a bare ``value``, or a JSON object with those keys.

    A bare value is stamped ``clock + interval`` (the next grid point after ``clock``).
    Never raises: a line that breaks the rules is returned as :class:`Rejected`.
    """
    if len(line) > MAX_LINE:
        return _rejected(line, f"line too long (over {MAX_LINE:,} characters)", position)
    text = line.strip().lstrip(BOM)
    if text.startswith("{"):
        return _json_line(line, text, position, clock, interval, time_format)
    fields = line_fields(line)
    if isinstance(fields, str):
        return _rejected(line, fields, position)
    try:
        if len(fields) == 1:
            return Point(clock + interval, number(fields[0].strip()))
        if len(fields) in (2, 3):
            if not fields[1].strip():
                return Rejected(line, "missing value", position)
            if not fields[0].strip():
                return Rejected(line, "missing timestamp", position)
            return Point(parse_timestamp(fields[0], time_format), number(fields[1].strip()),
                         label(fields[2]) if len(fields) == 3 else None)
    except ValueError as exc:
        return Rejected(line, f"unparsable: {exc}", position)
    return Rejected(line, f"unparsable: expected 1 to 3 fields, got {len(fields)}", position)


def _json_line(line: str, text: str, position: int, clock: float, interval: float, form: str) -> Point | Rejected:
    """Parse one JSON object line (see :func:`parse_line`); numbers stay text until :func:`number` reads them."""
    if "\r" in text:
        return Rejected(line, "carriage return inside the line", position)
    if _json_depth(text) > MAX_JSON_DEPTH:
        return Rejected(line, f"JSON nested deeper than {MAX_JSON_DEPTH}", position)
    try:
        record = json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError) as exc:
        return Rejected(line, f"unparsable: {str(exc)[:100]}", position)
    if not isinstance(record, dict) or "value" not in record:
        return Rejected(line, "JSON line without a 'value'", position)
    value, stamp = record["value"], record.get("timestamp")
    if value in (None, ""):
        return Rejected(line, "missing value", position)
    if not isinstance(value, str):  # true, false, an object, a list: numbers arrive as text here
        return Rejected(line, f"unparsable: value {shown(json.dumps(value))} is not a number", position)
    if stamp is not None and not isinstance(stamp, str):
        return Rejected(line, f"unparsable: timestamp {shown(json.dumps(stamp))} is not a time", position)
    series = record.get("series")
    if series is not None and (not isinstance(series, str) or len(series) > MAX_FIELD):
        return Rejected(line, f"unparsable: series {shown(json.dumps(series))} is not a name "
                              f"(text of at most {MAX_FIELD} characters)", position)
    try:
        return Point(parse_timestamp(stamp, form) if stamp is not None else clock + interval, number(value),
                     label(str(record["label"])) if "label" in record else None,
                     series=series.strip() if series is not None else None)
    except ValueError as exc:
        return Rejected(line, f"unparsable: {exc}", position)


def _json_depth(text: str) -> int:
    """Return the deepest nesting of brackets and braces in ``text`` (strings not told apart: an upper bound)."""
    codes = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    steps = (np.isin(codes, (ord("{"), ord("["))).astype(np.int64)
             - np.isin(codes, (ord("}"), ord("]"))).astype(np.int64))
    return int(np.cumsum(steps).max(initial=0))


def _reason(stamp: str, value: str, time_error: str | None, value_error: str | None) -> str:
    """Return the quarantine reason of a row whose timestamp or value could not be read."""
    if time_error:
        return "missing timestamp" if not stamp.strip() else f"unparsable: {time_error}"
    return "missing value" if not value.strip() else f"unparsable: value: {value_error}"


def _rejected(line: str, reason: str, position: int) -> Rejected:
    """A rejected line; a too-long one keeps only its start."""
    return Rejected(line[:SHOWN] + "..." if len(line) > MAX_LINE else line, reason, position)


def _plain(texts: list[str]) -> bool:
    """Whether every text is ASCII without underscores: then Python's ``float`` reads them as :func:`number` does."""
    joined = "".join(texts)
    return joined.isascii() and "_" not in joined


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

    ``form`` is one of :data:`anomaly.io.data.TIME_FORMATS`; the rules are those of
    :func:`anomaly.io.data.parse_timestamp`.
    """
    stamps = _iso_seconds(texts) if form in ("auto", "iso") else None
    if stamps is not None:
        return stamps, {}
    stamps = np.full(len(texts), np.nan)
    errors: dict[int, str] = {}
    numbers = None
    if form != "iso" and _plain(texts):
        try:  # epoch numbers
            numbers = epoch_seconds(np.fromiter(map(float, texts), np.float64, len(texts)), form)
        except ValueError:
            pass
    if numbers is not None and ((numbers >= FIRST_EPOCH_S) & (numbers <= LAST_EPOCH_S)).all():
        return numbers, {}
    for i, text in enumerate(texts):  # the per-line rules, with their messages
        try:
            stamps[i] = parse_timestamp(text, form)
        except ValueError as exc:
            errors[i] = str(exc)
    return stamps, errors


def parse_values(texts: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Return :func:`~anomaly.io.data.number` of each text ``(n,)`` (NaN where unreadable) and each one's error."""
    if _plain(texts):
        try:
            return np.fromiter(map(float, texts), np.float64, len(texts)), {}
        except ValueError:
            pass
    values = np.full(len(texts), np.nan)
    errors: dict[int, str] = {}
    for i, text in enumerate(texts):
        try:
            values[i] = number(text.strip())
        except ValueError as exc:
            errors[i] = str(exc)
    return values, errors


def split_fields(line: str) -> list[str]:
    """Return the CSV fields of one line (quotes honoured; a line never spans two records).

    Raises ``csv.Error`` on what the csv module cannot read (:func:`line_fields` does not).
    """
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]), [])


def parse_csv_lines(lines: list[str], first_position: int, n_fields: int, time_index: int,
                    value_index: int, label_index: int | None = None, time_format: str = "auto",
                    series_index: int | None = None) -> Chunk:
    """Parse consecutive CSV data lines (``\n`` stripped) into a :class:`Chunk`; never raises.

    ``first_position`` is the line number of ``lines[0]``; ``series_index``: the column
    naming each point's series (``chunk.series``; ``None``: one series). A line that breaks the line
    rules (:func:`line_fields`), has another number of fields than the header, or whose
    timestamp or value cannot be read, is rejected.
    """
    text = "\n".join(lines)
    rejected = []
    commas = [line.count(",") for line in lines]
    if (lines and '"' not in text and "\r" not in text and BOM not in text
            and min(commas) == max(commas) == n_fields - 1 and max(map(len, lines)) <= MAX_FIELD):
        # the common, clean case: one split of the whole block, columns by slicing (no list per row)
        flat = text.replace("\n", ",").split(",")
        columns = [flat[i::n_fields] for i in range(n_fields)]
        raws, positions = lines, range(first_position, first_position + len(lines))
    else:
        raws, positions, rows = [], [], []
        for offset, line in enumerate(lines):
            position = first_position + offset
            fields = line_fields(line)
            if isinstance(fields, str):
                rejected.append(_rejected(line, fields, position))
            elif len(fields) == n_fields:
                rows.append(fields)
                raws.append(line)
                positions.append(position)
            else:
                rejected.append(Rejected(line, f"unparsable: expected {n_fields} fields, got {len(fields)}",
                                         position))
        columns = [list(column) for column in zip(*rows)] if rows else [[] for _ in range(n_fields)]
    stamps, time_errors = parse_timestamps(columns[time_index], time_format)
    values, value_errors = parse_values(columns[value_index])
    labels = [label(text) for text in columns[label_index]] if label_index is not None else None
    series = [key.strip() for key in columns[series_index]] if series_index is not None else None
    chunk = Chunk(stamps, values, np.array(positions, dtype=np.int64), raws, labels, series=series)
    if time_errors or value_errors:
        bad = np.zeros(len(raws), dtype=bool)
        for i in sorted(set(time_errors) | set(value_errors)):
            bad[i] = True
            rejected.append(Rejected(raws[i], _reason(columns[time_index][i], columns[value_index][i],
                                                      time_errors.get(i), value_errors.get(i)), positions[i]))
        chunk = chunk.take(~bad)
    chunk.rejected = sorted(rejected, key=lambda r: r.position)
    return chunk
