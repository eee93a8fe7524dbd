"""Reading a user's history: CSV files with a timestamp and a value column.

Timestamps may be ISO 8601 (with or without a zone; no zone means UTC) or epoch
seconds / milliseconds. Everything becomes float epoch seconds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

EPOCH_MS_ABOVE = 1e11  # numbers this large are milliseconds (1e11 s is the year 5138)


TIME_FORMATS = ("auto", "iso", "epoch-s", "epoch-ms")


def epoch_seconds(number: float | np.ndarray, form: str = "auto"):
    """Return epoch seconds of an epoch number: ``epoch-ms`` divides by 1000; ``auto`` does so above 1e11."""
    if form == "epoch-ms":
        return number / 1000.0
    if form == "auto":
        return np.where(np.abs(number) > EPOCH_MS_ABOVE, number / 1000.0, number) \
            if isinstance(number, np.ndarray) else (number / 1000.0 if abs(number) > EPOCH_MS_ABOVE else number)
    return number


def parse_timestamp(text: str, form: str = "auto") -> float:
    """Return epoch seconds of a timestamp in ``form``: one of ``TIME_FORMATS``.

    ``auto`` takes ISO 8601 (no zone means UTC) or an epoch number, read as milliseconds
    when it is larger than 1e11 (year 5138 in seconds). ``iso``, ``epoch-s`` and
    ``epoch-ms`` take only that form. Raises ``ValueError`` with the offending text.
    """
    if form not in TIME_FORMATS:
        raise ValueError(f"time format must be one of {TIME_FORMATS}, got {form!r}")
    text = text.strip()
    if form != "iso":
        try:
            number = float(text)
        except ValueError:
            if form != "auto":
                raise ValueError(f"timestamp {text!r} is not an epoch number ({form})") from None
        else:
            if not np.isfinite(number):
                raise ValueError(f"timestamp {text!r} is not finite")
            return float(epoch_seconds(number, form))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO 8601" + (" nor an epoch number" if form == "auto" else "")) \
            from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def format_timestamp(epoch_s: float) -> str:
    """Return ``epoch_s`` as ``YYYY-MM-DD HH:MM:SS`` in UTC (the NAB style)."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class History:
    """A training history: ``(n,)`` epoch seconds and ``(n,)`` values, in file order."""

    timestamps: np.ndarray
    values: np.ndarray
    skipped: int = 0  # rows whose value or timestamp could not be read


def read_csv(path: str | Path, time_column: str = "timestamp", value_column: str = "value",
             head: int | None = None, time_format: str = "auto") -> History:
    """Read a CSV with a header into a :class:`History`.

    Rows with an unreadable timestamp or value are skipped and counted. Raises
    ``ValueError`` naming the columns when the header lacks them.
    """
    timestamps, values, skipped = [], [], 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in (time_column, value_column) if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} in the header {header}; "
                             f"choose columns with --time-column/--value-column")
        for row in reader:
            if head is not None and len(values) + skipped >= head:
                break
            try:
                stamp = parse_timestamp(row[time_column] or "", time_format)
                value = float(row[value_column])
            except (TypeError, ValueError):
                skipped += 1
                continue
            if not np.isfinite(value):
                skipped += 1
                continue
            timestamps.append(stamp)
            values.append(value)
    return History(np.array(timestamps, dtype=np.float64), np.array(values, dtype=np.float64), skipped)
