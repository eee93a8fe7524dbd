"""Where decisions go: a JSONL/CSV record per point, and a quarantine file for input that
could not be scored. (Incidents go to the console and ``anomaly.log``: :mod:`anomaly.io.alerts`.)

Sinks take a :class:`~anomaly.io.records.DecisionBlock` at a time (``write_block``) and flush
after each one, so a live consumer sees every decision as soon as it is made, and replay
formats thousands of records with one string template instead of one dict each.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .data import format_timestamp
from .records import Decision, DecisionBlock, Rejected

SLICE = 1024  # records formatted per call


def record(decision: Decision) -> dict:
    """Return the flat output record of a decision (one per input point): what a JSON line holds.

    :class:`OutputSink` formats whole blocks without building these dicts; the tests hold
    it to exactly this.

    Values and the combined p-value are exact; the score and the expected value are
    rounded to 6 decimals, each detector's own p-value to 6 significant digits (they
    explain a decision, and formatting full floats is most of the cost of writing a record).
    """
    row = {} if decision.series is None else {"series": decision.series}
    row |= {
        "timestamp": format_timestamp(decision.timestamp),
        "value": decision.value,
        "score": round(decision.score, 6),
        "p_value": decision.p_value,
        "is_anomaly": decision.is_anomaly,
        "status": decision.status,
        "expected": None if math.isnan(decision.expected) else round(decision.expected, 6),
    }
    row.update({f"p_{name}": float(f"{p:.6g}") for name, p in decision.p_detectors.items()})
    if decision.label is not None:
        row["label"] = decision.label
        row["kind"] = decision.kind
    return row


def record_columns(block: DecisionBlock) -> dict[str, list]:
    """Return the fields of :func:`record` for every point of ``block`` as typed columns (for a table output:
    Parquet, a DataFrame), with the same values and the same rounding; without ``series`` and the truth."""
    columns = {
        "timestamp": format_timestamps(block.timestamps),
        "value": block.values.tolist(),
        "score": np.round(block.score, 6).tolist(),
        "p_value": block.p_value.tolist(),
        "is_anomaly": block.is_anomaly.tolist(),
        "status": block.status(),
        "expected": [None if math.isnan(e) else e for e in np.round(block.expected, 6).tolist()],
    }
    columns.update({f"p_{name}": [float(f"{p:.6g}") for p in column]
                    for name, column in zip(block.names, block.p_detectors.T.tolist())})
    return columns


def _csv_field(text: str) -> str:
    """Return ``text`` as one CSV field (quoted when it holds a comma, a quote or a line end)."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def format_timestamps(epoch_s: np.ndarray) -> list[str]:
    """Return ``YYYY-MM-DD HH:MM:SS`` (UTC) of each epoch second, as :func:`format_timestamp` does."""
    micro = np.round(np.asarray(epoch_s, dtype=np.float64) * 1e6).astype("datetime64[us]")
    return [text.replace("T", " ") for text in np.datetime_as_string(micro.astype("datetime64[s]")).tolist()]


def _columns(block: DecisionBlock, as_json: bool) -> tuple[list[str], list[list]]:
    """Return the field names and the column values of :func:`record` for a whole block."""
    true, false, null = ("true", "false", "null") if as_json else ("True", "False", "")
    expected = np.round(block.expected, 6).tolist()
    names = ["timestamp", "value", "score", "p_value", "is_anomaly", "status", "expected"]
    columns = [
        format_timestamps(block.timestamps),
        block.values.tolist(),
        np.round(block.score, 6).tolist(),
        block.p_value.tolist(),
        [true if flag else false for flag in block.is_anomaly.tolist()],
        block.status(),
        [null if math.isnan(e) else e for e in expected],
    ]
    names += [f"p_{name}" for name in block.names]
    columns += block.p_detectors.T.tolist()
    return names, columns


def records_text(block: DecisionBlock, as_json: bool = True) -> Iterator[str]:
    """Yield the block's records as text, a slice of rows at a time: JSON Lines, or CSV rows (no header).

    Each JSON line holds what :func:`record` gives for its decision.
    """
    names, columns = _columns(block, as_json=as_json)
    n = len(block)
    labels = block.labels if block.labels is not None else [None] * n
    kinds = block.kinds if block.kinds is not None else [""] * n
    if not as_json:
        columns += [["" if v is None else v for v in labels], ["" if v is None else k for v, k in zip(labels, kinds)]]
        template = "%s,%r,%r,%r,%s,%s,%s" + ",%.6g" * len(block.names) + ",%s,%s\r\n"
    else:  # the truth fields only where the source knows the truth, as record() does
        columns.append(["" if v is None else f', "label": {"true" if v else "false"}, "kind": {json.dumps(k)}'
                        for v, k in zip(labels, kinds)])
        template = ('{"timestamp": "%s", "value": %r, "score": %r, "p_value": %r, "is_anomaly": %s, '
                    '"status": "%s", "expected": %s' + "".join(f', "{n}": %.6g' for n in names[7:]) + "%s}\n")
    if block.series is not None:  # a keyed stream: every record names its series, first
        keys = [block.series] * n if isinstance(block.series, str) else block.series
        columns.insert(0, [json.dumps(key) if as_json else _csv_field(key) for key in keys])
        template = '{"series": %s, ' + template[1:] if as_json else "%s," + template
    rows = list(zip(*columns))
    for i in range(0, n, SLICE):  # short C calls: scoring threads get the GIL in between
        yield "".join(map(template.__mod__, rows[i:i + SLICE]))


class OutputSink:
    """Writes every decision to JSON Lines (``.jsonl``/``.json``, or ``-`` for stdout) or CSV (``.csv``)."""

    def __init__(self, path: str | Path):
        if str(path) == "-":
            self.csv, self.handle, self._owned = False, sys.stdout, False
        else:
            path = Path(path)
            if path.suffix.lower() not in (".jsonl", ".json", ".csv"):
                raise ValueError(f"--output {path}: use a .jsonl or .csv file name (or - for stdout)")
            self.csv = path.suffix.lower() == ".csv"
            self.handle, self._owned = open(path, "w", newline=""), True
        self._header_written = False

    def write_block(self, block: DecisionBlock) -> None:
        if len(block) == 0:
            return
        if self.csv and not self._header_written:
            names, _ = _columns(block, as_json=False)
            self.handle.write(",".join((["series"] if block.series is not None else []) + names + ["label", "kind"])
                              + "\r\n")
            self._header_written = True
        for text in records_text(block, as_json=not self.csv):
            self.handle.write(text)
        self.handle.flush()

    def close(self) -> None:
        if self._owned:
            self.handle.close()
        else:
            try:
                self.handle.flush()
            except BrokenPipeError:  # stdout's reader went away: nothing left to flush into
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.handle.fileno())


class QuarantineSink:
    """Keeps every rejected input line, with its reason and position, as JSON Lines."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = None

    def write(self, rejected: Rejected) -> None:
        if self.handle is None:  # created on first use: no empty files for clean input
            self.handle = open(self.path, "a", buffering=1)
        row = {"position": rejected.position, "reason": rejected.reason, "raw": rejected.raw}
        if rejected.series is not None:
            row["series"] = rejected.series
        self.handle.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
