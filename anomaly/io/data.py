"""Reading a user's history: CSV files with a timestamp and a value column.

Timestamps may be ISO 8601 (with or without a zone; no zone means UTC) or epoch
seconds / milliseconds. Everything becomes float epoch seconds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

EPOCH_MS_ABOVE = 1e11  # numbers this large are milliseconds (1e11 s is the year 5138)
FIRST_EPOCH_S, LAST_EPOCH_S = -62_135_596_800.0, 253_402_300_799.0  # years 1 to 9999: what a datetime can hold
SHOWN_TEXT = 40  # characters of an unreadable text quoted in its error


TIME_FORMATS = ("auto", "iso", "epoch-s", "epoch-ms")


def epoch_seconds(number: float | np.ndarray, form: str = "auto"):
    """Return epoch seconds of an epoch number: ``epoch-ms`` divides by 1000; ``auto`` does so above 1e11."""
    if form == "epoch-ms":
        return number / 1000.0
    if form == "auto":
        return np.where(np.abs(number) > EPOCH_MS_ABOVE, number / 1000.0, number) \
            if isinstance(number, np.ndarray) else (number / 1000.0 if abs(number) > EPOCH_MS_ABOVE else number)
    return number


def shown(text: str) -> str:
    """Return ``repr(text)``, cut to its first ``SHOWN_TEXT`` characters: error messages stay one short line."""
    return repr(text) if len(text) <= SHOWN_TEXT else repr(text[:SHOWN_TEXT]) + "..."


def number(text: str) -> float:
    """Return the number ``text`` writes in plain decimal or exponent form (``-1.5``, ``2e-3``).

    Python's ``float`` also reads ``1_000`` and digits of other scripts; a metric line
    that does is more likely garbage than a number, so those raise ``ValueError``.
    ``nan`` and ``inf`` are read (as non-finite numbers, which the runner rejects by name).
    """
    if not text.isascii() or "_" in text:
        raise ValueError(f"{shown(text)} is not a plain decimal number")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{shown(text)} is not a number") from None


def parse_timestamp(text: str, form: str = "auto") -> float:
    """Return epoch seconds of a timestamp in ``form``: one of ``TIME_FORMATS``.

    ``auto`` takes ISO 8601 (no zone means UTC) or an epoch number (see :func:`number`),
    read as milliseconds when it is larger than 1e11 (year 5138 in seconds). ``iso``,
    ``epoch-s`` and ``epoch-ms`` take only that form. A time outside the years 1 to 9999
    cannot be written back as a date and is refused. Raises ``ValueError`` with the
    offending text.
    """
    if form not in TIME_FORMATS:
        raise ValueError(f"time format must be one of {TIME_FORMATS}, got {form!r}")
    text = text.strip()
    if form != "iso":
        try:
            epoch = number(text)
        except ValueError:
            if form != "auto":
                raise ValueError(f"timestamp {shown(text)} is not an epoch number ({form})") from None
        else:
            if not np.isfinite(epoch):
                raise ValueError(f"timestamp {shown(text)} is not finite")
            return _in_range(float(epoch_seconds(epoch, form)), text)
    if not text.isascii():
        raise ValueError(f"timestamp {shown(text)} is not ISO 8601 (ASCII digits only)")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {shown(text)} is not ISO 8601"
                         + (" nor an epoch number" if form == "auto" else "")) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _in_range(moment.timestamp(), text)


def _in_range(seconds: float, text: str) -> float:
    if not FIRST_EPOCH_S <= seconds <= LAST_EPOCH_S:
        raise ValueError(f"timestamp {shown(text)} is out of range (years 1 to 9999 in UTC)")
    return seconds


def format_timestamp(epoch_s: float) -> str:
    """Return ``epoch_s`` as ``YYYY-MM-DD HH:MM:SS`` in UTC (the NAB style)."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
