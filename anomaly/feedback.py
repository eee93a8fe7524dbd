"""Label feedback: a person marks a stretch of time as a false alarm or as a missed anomaly.

Feedback is a JSON Lines file, one label per line::

    {"label": "false_alarm", "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:20:00Z"}
    {"label": "anomaly", "start": 1732442400, "end": 1732443000, "note": "disk full"}

``start`` and ``end`` (inclusive) are ISO 8601 or epoch seconds/milliseconds; ``incident``
and ``note`` are kept for people. ``python -m anomaly.feedback`` appends such lines, by
incident number (looked up in the alerts file) or by time.

What a label does:

- ``false_alarm``: the points are normal. Their scores join the calibration sample, weighted
  so that the same pattern at the same strength scores a p-value of at least twice the alarm
  threshold: it stops alerting, while a clearly stronger one still does. ``stream.py``
  applies it to the points it still holds (the adaptation history); ``train.py --feedback``
  to its history.
- ``anomaly``: the points are never used to learn what is normal: not by the training of
  ``train.py --feedback``, not by the stream's recalibration and refits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .io.data import format_timestamp, parse_timestamp

KINDS = ("false_alarm", "anomaly")
DEFAULT_FILE = "feedback.jsonl"


@dataclass(frozen=True)
class Label:
    """A labelled stretch of time: ``kind`` is ``false_alarm`` or ``anomaly``; bounds in epoch seconds, inclusive."""

    kind: str
    start: float
    end: float

    def covers(self, timestamps: np.ndarray) -> np.ndarray:
        """Return which of ``timestamps`` (epoch seconds) lie inside this label."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        return (timestamps >= self.start) & (timestamps <= self.end)


def mask(labels: list[Label], timestamps: np.ndarray, kind: str) -> np.ndarray:
    """Return the ``(n,)`` bool mask of ``timestamps`` inside any label of ``kind``."""
    covered = np.zeros(len(timestamps), dtype=bool)
    for label in labels:
        if label.kind == kind:
            covered |= label.covers(timestamps)
    return covered


def _time(value, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} is missing")
    if isinstance(value, (int, float)):
        return float(value / 1000.0 if abs(value) > 1e11 else value)
    return parse_timestamp(str(value))


def parse_label(line: str) -> Label:
    """Return the label of one JSON line, or raise ``ValueError`` saying what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = str(record.get("label", "")).replace("-", "_").replace(" ", "_").lower()
    if kind not in KINDS:
        raise ValueError(f"label must be one of {', '.join(KINDS)}, got {record.get('label')!r}")
    start = _time(record.get("start"), "start")
    end = _time(record.get("end", record.get("start")), "end")
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError("start and end must be times with start <= end")
    return Label(kind, start, end)


class FeedbackFile:
    """Reads a feedback file, then the lines appended to it since (a file that does not exist yet is empty)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._line = 0
        self.problems: list[str] = []  # one message per unreadable line: what and where

    def poll(self) -> list[Label]:
        """Return the labels of the complete lines added since the last call."""
        try:
            if self.path.stat().st_size <= self._offset:
                return []
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        labels = []
        for raw in lines:
            self._line += 1
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                labels.append(parse_label(text))
            except ValueError as exc:
                self.problems.append(f"{self.path}, line {self._line}: {exc}; ignored")
        return labels


def read_feedback(path: str | Path) -> list[Label]:
    """Return every label in a feedback file; raise ``ValueError`` naming the first bad line."""
    source = FeedbackFile(path)
    if not source.path.is_file():
        raise FileNotFoundError(f"no feedback file {path}")
    labels = source.poll() + ([parse_label(source._partial.decode())] if source._partial.strip() else [])
    if source.problems:
        raise ValueError(source.problems[0].replace("; ignored", ""))
    return labels


def incident_times(alerts: str | Path, number: int) -> tuple[float, float]:
    """Return the start and end (epoch seconds) of incident ``number``, its latest event in an alerts file."""
    found = None
    with open(alerts, encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
                incident = event["incident"]
            except (ValueError, KeyError, TypeError):
                continue
            if incident.get("id") == number:
                found = incident
    if found is None:
        raise ValueError(f"incident #{number} is not in {alerts}")
    return parse_timestamp(found["start"]), parse_timestamp(found["end"])


def _iso(epoch_s: float) -> str:
    """Return ``epoch_s`` in UTC, to the second, or to the microsecond when it has a fraction (nothing is lost)."""
    if epoch_s == int(epoch_s):
        return format_timestamp(epoch_s)
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def main(argv: list[str] | None = None) -> int:
    """``python -m anomaly.feedback``: append one label to the feedback file."""
    parser = argparse.ArgumentParser(
        prog="python -m anomaly.feedback",
        description="Mark an incident as a false alarm, or a stretch of time as a missed anomaly. The label is "
                    "appended to the feedback file, which stream.py reads as it runs and train.py --feedback "
                    "reads when training.",
        epilog="examples:\n  python -m anomaly.feedback false_alarm --incident 3 --alerts alerts.jsonl\n"
               "  python -m anomaly.feedback anomaly --start 2026-11-24T10:00Z --end 2026-11-24T10:30Z",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("label", choices=KINDS + ("false-alarm",), help="what the stretch was")
    parser.add_argument("--incident", type=int, metavar="N", help="incident number, looked up in --alerts")
    parser.add_argument("--alerts", default="alerts.jsonl", metavar="JSONL",
                        help="the alerts file stream.py --alerts wrote (default: alerts.jsonl)")
    parser.add_argument("--start", help="first time of the stretch (ISO 8601 or epoch seconds)")
    parser.add_argument("--end", help="last time of the stretch (default: --start)")
    parser.add_argument("--note", default="", help="a few words for people")
    parser.add_argument("--file", default=DEFAULT_FILE, help=f"feedback file (default: {DEFAULT_FILE})")
    args = parser.parse_args(argv)
    kind = args.label.replace("-", "_")
    try:
        if args.incident is not None:
            start, end = incident_times(args.alerts, args.incident)
        elif args.start:
            start = parse_timestamp(args.start)
            end = parse_timestamp(args.end) if args.end else start
        else:
            parser.error("give --incident N (with --alerts) or --start [--end]")
        if end < start:
            raise ValueError("--end is before --start")
    except (OSError, ValueError) as exc:
        print(f"anomaly.feedback: error: {exc}", file=sys.stderr)
        return 2
    record = append_label(args.file, kind, start, end, args.incident, args.note)
    print(f"{kind.replace('_', ' ')} {record['start']} to {record['end']} added to {args.file}")
    return 0


def append_label(path: str | Path, kind: str, start: float, end: float, incident: int | None = None,
                 note: str = "", series: str | None = None) -> dict:
    """Append one label (epoch seconds, inclusive) to the feedback file, synced to disk; return its record.

    ``incident``, ``note`` and ``series`` are kept for people (a label applies to every series)."""
    if kind not in KINDS:
        raise ValueError(f"label must be one of {', '.join(KINDS)}, got {kind!r}")
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError("start and end must be times with start <= end")
    record = {"label": kind, "start": _iso(start), "end": _iso(end)}
    if incident is not None:
        record["incident"] = incident
    if series is not None:
        record["series"] = series
    if note:
        record["note"] = note
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record


if __name__ == "__main__":
    sys.exit(main())
