"""The online loop: one decision per arriving point, exactly causal.

A :class:`Runner` keeps the last ``window - 1`` scaled points. ``step`` scores one point;
``step_many`` scores a block of queued points in one vectorised pass (each point still
sees only itself and earlier points). Invalid points are rejected with a reason, never
silently dropped: the caller sends them to the quarantine sink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .ensemble import Ensemble
from .simulate import Point


@dataclass(frozen=True)
class Decision:
    """The verdict on one point. ``status`` is ``ok`` or ``warm-up`` (buffers not yet full)."""

    timestamp: float  # epoch seconds
    value: float
    score: float  # in [0, 1); 0.5 is the alarm threshold
    p_value: float
    is_anomaly: bool
    p_detectors: dict[str, float]
    status: str = "ok"
    expected: float = math.nan
    spread: float = math.nan
    label: bool | None = None
    kind: str = ""
    alpha: float = 1e-3  # the alarm threshold the decision was made with

    @property
    def fired(self) -> list[str]:
        """Detectors whose own p-value is below the alarm threshold, strongest first."""
        return [name for name, p in sorted(self.p_detectors.items(), key=lambda kv: kv[1])
                if p < self.alpha]


@dataclass(frozen=True)
class Rejected:
    """A point that could not be scored, and why; it goes to quarantine, not to the void."""

    raw: str
    reason: str
    position: int  # 1-based position in the input (line number for text sources)


@dataclass
class Counts:
    points: int = 0
    anomalies: int = 0
    warmup: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Runner:
    """Scores a stream point by point (or block by block) with a trained :class:`Ensemble`."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble
        self._keep = ensemble.window - 1
        self._scaled = np.empty(0)
        self._positions = np.empty(0, dtype=np.int64)
        self._last_timestamp = -math.inf
        self.counts = Counts()

    def check(self, point: Point, position: int) -> Rejected | None:
        """Return why ``point`` cannot be scored, or ``None`` when it is valid.

        A valid point has a finite value and a timestamp after the previous valid one.
        """
        if not math.isfinite(point.value):
            reason = "non-finite value"
        elif not math.isfinite(point.timestamp):
            reason = "non-finite timestamp"
        elif point.timestamp <= self._last_timestamp:
            reason = "duplicate timestamp" if point.timestamp == self._last_timestamp else "timestamp out of order"
        else:
            self._last_timestamp = point.timestamp
            return None
        return Rejected(f"{point.timestamp},{point.value}", reason, position)

    def reject(self, rejected: Rejected) -> Rejected:
        """Count a rejected input; return it for the quarantine sink."""
        self.counts.rejected += 1
        self.counts.by_reason[rejected.reason] = self.counts.by_reason.get(rejected.reason, 0) + 1
        return rejected

    def step(self, point: Point) -> Decision:
        """Return the decision for one valid point."""
        return self.step_many([point])[0]

    def step_many(self, points: list[Point]) -> list[Decision]:
        """Return one decision per valid point, in order, scoring the block in one pass."""
        if not points:
            return []
        ens = self.ensemble
        stamps = np.fromiter((p.timestamp for p in points), np.float64, len(points))
        values = np.fromiter((p.value for p in points), np.float64, len(points))
        scaled = np.concatenate([self._scaled, ens.scaler.transform(values)])
        positions = np.concatenate([self._positions, ens.grid.positions(stamps)])
        self._scaled, self._positions = scaled[-self._keep:], positions[-self._keep:]
        n_warm = max(0, min(len(points), ens.window - (len(scaled) - len(points)) - 1))
        decisions = [self._warmup(p) for p in points[:n_warm]]
        if n_warm < len(points):
            d = ens.decide(scaled, positions)
            offset = len(d.p_value) - (len(points) - n_warm)
            names = ens.names
            for j, point in enumerate(points[n_warm:], start=offset):
                decisions.append(Decision(
                    point.timestamp, point.value, float(d.score[j]), float(d.p_value[j]),
                    bool(d.is_anomaly[j]), dict(zip(names, d.p_detectors[j].tolist())), "ok",
                    float(d.expected[j]), float(d.spread[j]), point.label, point.kind, ens.alpha))
        self.counts.points += len(points)
        self.counts.warmup += n_warm
        self.counts.anomalies += sum(d.is_anomaly for d in decisions)
        return decisions

    def _warmup(self, point: Point) -> Decision:
        names = self.ensemble.names
        return Decision(point.timestamp, point.value, 0.0, 1.0, False, dict.fromkeys(names, 1.0),
                        "warm-up", label=point.label, kind=point.kind, alpha=self.ensemble.alpha)
