"""Where decisions go: console lines, ``anomaly.log``, a JSONL/CSV record per point,
and a quarantine file for input that could not be scored."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import TextIO

from .data import format_timestamp
from .runner import Decision, Rejected


def describe(decision: Decision) -> str:
    """Return the one-line message for an anomalous point."""
    fired = ", ".join(f"{n} (p={decision.p_detectors[n]:.1e})" for n in decision.fired) or "combined evidence"
    expected = (f"  expected {decision.expected:.4g} ± {decision.spread:.2g}"
                if math.isfinite(decision.expected) else "")
    truth = f"  [true: {decision.kind or 'normal'}]" if decision.label is not None else ""
    return (f"ANOMALY {format_timestamp(decision.timestamp)}  value {decision.value:.4g}{expected}"
            f"  score {decision.score:.2f}  p {decision.p_value:.1e}  fired: {fired}{truth}")


class ConsoleSink:
    """Prints one line per anomaly."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def write(self, decision: Decision) -> None:
        if decision.is_anomaly:
            print(describe(decision), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LogFileSink:
    """Appends one line per anomaly to a log file (``anomaly.log`` by default)."""

    def __init__(self, path: str | Path):
        self.handle = open(path, "a", buffering=1)

    def write(self, decision: Decision) -> None:
        if decision.is_anomaly:
            self.handle.write(describe(decision) + "\n")

    def close(self) -> None:
        self.handle.close()


def record(decision: Decision) -> dict:
    """Return the flat output record of a decision (one per input point)."""
    row = {
        "timestamp": format_timestamp(decision.timestamp),
        "value": decision.value,
        "score": round(decision.score, 6),
        "p_value": decision.p_value,
        "is_anomaly": decision.is_anomaly,
        "status": decision.status,
        "expected": None if math.isnan(decision.expected) else round(decision.expected, 6),
    }
    row.update({f"p_{name}": p for name, p in decision.p_detectors.items()})
    if decision.label is not None:
        row["label"] = decision.label
        row["kind"] = decision.kind
    return row


class OutputSink:
    """Writes every decision to JSON Lines (``.jsonl``/``.json``) or CSV (``.csv``)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.suffix.lower() not in (".jsonl", ".json", ".csv"):
            raise ValueError(f"--output {path}: use a .jsonl or .csv file name")
        self.csv = path.suffix.lower() == ".csv"
        self.handle = open(path, "w", newline="")
        self._writer = None

    def write(self, decision: Decision) -> None:
        row = record(decision)
        if not self.csv:
            self.handle.write(json.dumps(row) + "\n")
            return
        if self._writer is None:
            fields = list(row) + [k for k in ("label", "kind") if k not in row]
            self._writer = csv.DictWriter(self.handle, fieldnames=fields, restval="")
            self._writer.writeheader()
        self._writer.writerow(row)

    def close(self) -> None:
        self.handle.close()


class QuarantineSink:
    """Keeps every rejected input line, with its reason and position, as JSON Lines."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = None

    def write(self, rejected: Rejected) -> None:
        if self.handle is None:  # created on first use: no empty files for clean input
            self.handle = open(self.path, "a", buffering=1)
        self.handle.write(json.dumps({"position": rejected.position, "reason": rejected.reason,
                                      "raw": rejected.raw}) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
