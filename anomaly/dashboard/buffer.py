"""What the dashboard shows, kept apart from scoring: the last points of every series and the incidents.

:class:`Board` is a sink (``write_block``) and an alert sink (``write``) of the stream. It
keeps, per series, the last ``points`` decisions in ring buffers of numpy arrays and, for
all series, the last ``incidents`` incident events; the web app reads copies of them under
a lock. Writing a block costs a few array copies per series in it, whatever the number of
browsers: the dashboard never slows scoring, and a slow browser only falls behind.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

import numpy as np

from ..io.alerts import payload

FIELDS = ("timestamps", "values", "expected", "spread", "score", "is_anomaly")


class SeriesBuffer:
    """The last ``size`` decisions of one series, as ring-buffered columns."""

    def __init__(self, size: int, names: list[str]):
        self.size, self.names = size, list(names)
        self.columns = {name: np.full(size, np.nan) for name in FIELDS}
        self.p = np.full((size, len(names)), np.nan)
        self.count = 0  # points ever written
        self.anomalies = 0
        self.updated = 0.0  # wall time of the last point

    def extend(self, columns: dict[str, np.ndarray], p: np.ndarray) -> None:
        n = len(columns["timestamps"])
        take = slice(max(0, n - self.size), n)
        index = (self.count + np.arange(max(0, n - self.size), n)) % self.size
        for name in FIELDS:
            self.columns[name][index] = columns[name][take]
        if p.shape[1] == self.p.shape[1]:
            self.p[index] = p[take]
        self.count += n
        self.anomalies += int(np.nansum(columns["is_anomaly"]))
        self.updated = time.time()

    def since(self, timestamp: float | None = None) -> dict:
        """Return the kept points after ``timestamp`` (all when ``None``), oldest first, as JSON-able lists."""
        held = min(self.count, self.size)
        order = (self.count - held + np.arange(held)) % self.size
        keep = order if timestamp is None else order[self.columns["timestamps"][order] > timestamp]
        out = {name: [None if not math.isfinite(v) else v for v in self.columns[name][keep].tolist()]
               for name in FIELDS if name != "is_anomaly"}
        out["is_anomaly"] = [bool(v == 1) for v in self.columns["is_anomaly"][keep].tolist()]
        out["p"] = {name: [None if not math.isfinite(v) else float(f"{v:.4g}") for v in self.p[keep, i].tolist()]
                    for i, name in enumerate(self.names)}
        return out


class Board:
    """The stream's recent decisions per series and its incidents, for the dashboard (see the module)."""

    def __init__(self, points: int = 2000, incidents: int = 1000, alpha: float = 1e-3):
        self.size, self.max_incidents, self.alpha = points, incidents, alpha
        self.series: dict[str, SeriesBuffer] = {}
        self.incidents: OrderedDict[tuple, dict] = OrderedDict()  # (series, number, start) -> latest event
        self.version = 0  # bumped at every change: the page's server-sent events say when to look again
        self.lock = threading.Lock()

    # -------------------------------------------------------------- sinks
    def write_block(self, block) -> None:
        """Keep a block of decisions (one series, or many named per point)."""
        if not len(block):
            return
        columns = {"timestamps": block.timestamps, "values": block.values, "expected": block.expected,
                   "spread": block.spread, "score": block.score, "is_anomaly": block.is_anomaly.astype(float)}
        self.alpha = block.alpha or self.alpha
        keys = block.series
        with self.lock:
            if keys is None or isinstance(keys, str):
                self._extend(keys or "", columns, block.p_detectors, block.names)
            else:
                unique, inverse = np.unique(np.asarray(keys), return_inverse=True)  # one pass, not one per series
                order = np.argsort(inverse, kind="stable")
                bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
                for j, key in enumerate(unique.tolist()):
                    rows = order[bounds[j]:bounds[j + 1]]
                    self._extend(key, {k: v[rows] for k, v in columns.items()}, block.p_detectors[rows],
                                 block.names)
            self.version += 1

    def _extend(self, key: str, columns: dict, p: np.ndarray, names: list[str]) -> None:
        if key not in self.series:
            self.series[key] = SeriesBuffer(self.size, names)
        self.series[key].extend(columns, p)

    def write(self, event) -> None:
        """Keep an incident event (the latest event of each incident wins)."""
        record = payload(event)
        record["incident"]["evidence"] = {name: float(f"{p:.3g}") for name, p in event.incident.evidence.items()}
        self.add_event(record)

    def close(self) -> None:
        pass

    # -------------------------------------------------------------- a finished run's files
    def add_records(self, records: list[dict]) -> None:
        """Keep output records (``stream.py --output`` JSON Lines, as dicts) of one or many series."""
        from ..io.data import parse_timestamp

        by_series: dict[str, list[dict]] = {}
        for record in records:
            by_series.setdefault(str(record.get("series", "")), []).append(record)
        with self.lock:
            for key, rows in by_series.items():
                names = [k[2:] for k in rows[0] if k.startswith("p_") and k != "p_value"]
                columns = {"timestamps": np.array([parse_timestamp(r["timestamp"]) for r in rows]),
                           "values": np.array([r["value"] for r in rows], dtype=float),
                           "expected": np.array([np.nan if r.get("expected") is None else r["expected"] for r in rows],
                                                dtype=float),
                           "spread": np.full(len(rows), np.nan),
                           "score": np.array([r["score"] for r in rows], dtype=float),
                           "is_anomaly": np.array([bool(r["is_anomaly"]) for r in rows], dtype=float)}
                p = np.array([[r.get(f"p_{name}", np.nan) for name in names] for r in rows], dtype=float)
                self._extend(key, columns, p.reshape(len(rows), len(names)), names)
            self.version += 1

    def add_event(self, record: dict) -> None:
        """Keep an incident event as ``stream.py --alerts`` writes it (a dict; the latest event of each
        incident wins)."""
        incident = record["incident"]
        incident["series"] = incident.get("series") or ""
        record = {**record, "open": record.get("event") == "opened"}
        with self.lock:
            key = (incident["series"], incident["id"], incident["start"])
            self.incidents.pop(key, None)
            self.incidents[key] = record
            while len(self.incidents) > self.max_incidents:
                self.incidents.popitem(last=False)
            self.version += 1

    # -------------------------------------------------------------- reads (the web app)
    def series_list(self, query: str = "") -> list[dict]:
        """Return every series matching ``query`` (a substring), those with open incidents first."""
        with self.lock:
            open_by_series: dict[str, int] = {}
            for record in self.incidents.values():
                if record["open"]:
                    open_by_series[record["incident"]["series"]] = open_by_series.get(record["incident"]["series"],
                                                                                      0) + 1
            rows = [{"id": key, "points": buffer.count, "anomalies": buffer.anomalies,
                     "open_incidents": open_by_series.get(key, 0), "updated": buffer.updated}
                    for key, buffer in self.series.items() if query.lower() in key.lower()]
        return sorted(rows, key=lambda row: (-row["open_incidents"], row["id"]))

    def points(self, key: str, since: float | None = None) -> dict | None:
        """Return the kept points of series ``key`` after ``since`` (``None``: unknown series)."""
        with self.lock:
            buffer = self.series.get(key)
            if buffer is None:
                return None
            return {"id": key, "alpha": self.alpha, "detectors": buffer.names, **buffer.since(since)}

    def incident_list(self, series: str | None = None) -> list[dict]:
        """Return the kept incidents (of one series when given), open ones first, newest first."""
        with self.lock:
            records = [r for r in self.incidents.values() if series is None or r["incident"]["series"] == series]
        records = list(reversed(records))
        return sorted(records, key=lambda r: not r["open"])
