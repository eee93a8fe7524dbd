"""Point flags become incidents: one alert per incident, not one per flagged point.

An incident opens when ``k`` of the last ``n`` scored points are flagged (by default any
flag), takes in every flag that follows, and closes once ``cooldown`` points in a row have
passed without a flag. The flags that linger right after an event, while it is still
inside the detectors' windows, therefore stay in the same incident.

>>> from anomaly.io.alarms import AlarmFilter
>>> f = AlarmFilter(cooldown=2)
>>> [e.kind for e in f.update_flags([False, True, True, False, False, False, True])]
['opened', 'closed', 'opened']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .records import DecisionBlock

RANGE = "range"  # an incident's evidence of a record: a value beyond every value seen (no detector has this name)


@dataclass
class Incident:
    """One anomalous episode: when, how strong at its peak, and which detectors saw it."""

    id: int
    start: float  # epoch seconds of its first flagged point
    end: float  # epoch seconds of its last flagged point (so far)
    flagged: int = 0  # flagged points in it
    peak_score: float = 0.0
    peak_timestamp: float = math.nan
    peak_value: float = math.nan
    expected: float = math.nan  # at the peak, in the series' units
    spread: float = math.nan
    # whose own p-value fell below the threshold, strongest first; "range": a value beyond every value seen
    detectors: list[str] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=dict)  # each of those detectors' smallest p-value in it
    true_kind: str = ""  # the simulator's truth: the first labelled kind it flagged, else "normal"
    series: str | None = None  # the series it happened in (None: the stream's only one)

    def to_dict(self) -> dict:
        return asdict(self)

    def snapshot(self) -> Incident:
        """Return a copy that later points of the stream leave as it is."""
        return replace(self, detectors=list(self.detectors), evidence=dict(self.evidence))


@dataclass(frozen=True)
class AlarmEvent:
    kind: str  # "opened" or "closed"
    incident: Incident


class AlarmFilter:
    """Tracks the open incident of one stream; feed it every block of decisions in order."""

    def __init__(self, k: int = 1, n: int = 1, cooldown: int = 32, series: str | None = None):
        if not 1 <= k <= n:
            raise ValueError(f"alarms: need 1 <= k <= n, got k={k}, n={n}")
        if cooldown < 1:
            raise ValueError(f"alarms: cooldown must be at least 1 point, got {cooldown}")
        self.k, self.n, self.cooldown = k, n, cooldown
        self.series = series  # stamped on each incident
        # the last n scored points' flags, the newest in bit 0, and how many there were (at most n): two ints, not
        # a deque (memory of many series: a deque holds half a kilobyte)
        self._recent, self._seen = 0, 0
        self._quiet = 0  # scored points since the open incident's last flag
        self.open: Incident | None = None
        self.count = 0  # incidents opened so far

    def state(self) -> tuple[dict, dict]:
        """Return ``(arrays, meta)``: the open incident, the recent flags, the counters (see :mod:`anomaly.online.state`)."""
        recent = [(self._recent >> age) & 1 for age in reversed(range(self._seen))]  # oldest first
        return {"recent": np.array(recent, dtype=bool)}, {
            "quiet": self._quiet, "count": self.count, "open": None if self.open is None else self.open.to_dict()}

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Go on from :meth:`state`'s output."""
        recent = np.asarray(arrays["recent"], dtype=bool)[-self.n:].tolist()  # oldest first
        self._recent = sum(int(flag) << age for age, flag in enumerate(reversed(recent)))
        self._seen = len(recent)
        self._quiet, self.count = int(meta["quiet"]), int(meta["count"])
        self.open = None if meta["open"] is None else Incident(**meta["open"])

    def update(self, block: DecisionBlock) -> list[AlarmEvent]:
        """Return the incidents opened and closed by this block's points, in order."""
        scored = ~block.warmup if block.filled is None else ~block.warmup & ~block.filled
        return self.update_flags(block.is_anomaly, block, scored)

    def update_flags(self, flags, block: DecisionBlock | None = None, scored=None) -> list[AlarmEvent]:
        """Like :meth:`update`, from ``(n,)`` flags alone (``block`` gives the details)."""
        flags = np.asarray(flags, dtype=bool)
        events: list[AlarmEvent] = []
        recent, mask = self._recent, (1 << self.n) - 1  # (in locals: a method call a point cost 4x the deque's)
        rows = np.flatnonzero(scored) if scored is not None else range(len(flags))
        for i in rows:
            flag = bool(flags[i])
            recent = ((recent << 1) | flag) & mask
            if self.open is not None:
                if flag:
                    self._quiet = 0
                    self._take(i, block)
                else:
                    self._quiet += 1
                    if self._quiet >= self.cooldown:
                        events.append(AlarmEvent("closed", self.open))
                        self.open = None
            elif flag and recent.bit_count() >= self.k:
                self.count += 1
                stamp = float(block.timestamps[i]) if block is not None else float(i)
                self.open = Incident(self.count, stamp, stamp, series=self.series)
                self._quiet = 0
                self._take(i, block)
                # as it stood at its first point: a replay's block goes on changing the open incident
                events.append(AlarmEvent("opened", self.open.snapshot()))
        self._recent, self._seen = recent, min(self._seen + len(rows), self.n)
        return events

    def quiet(self) -> bool:
        """Take in one scored point without a flag when no incident is open (all it changes is the recent
        flags); return ``False``, taking in nothing, when an incident is open: :meth:`update` it."""
        if self.open is not None:
            return False
        self.quiet_many(1)
        return True

    def quiet_many(self, count: int) -> None:
        """Take in ``count`` scored points without a flag, no incident being open (as many :meth:`quiet` calls)."""
        if count:
            count = min(count, self.n)
            self._recent = (self._recent << count) & ((1 << self.n) - 1)
            self._seen = min(self._seen + count, self.n)

    def close(self) -> list[AlarmEvent]:
        """Close the open incident at the end of the stream."""
        if self.open is None:
            return []
        event, self.open = AlarmEvent("closed", self.open), None
        return [event]

    def _take(self, i: int, block: DecisionBlock | None) -> None:
        incident = self.open
        incident.flagged += 1
        if block is None:
            return
        incident.end = float(block.timestamps[i])
        for name, p in zip(block.names, block.p_detectors[i].tolist()):
            if p < block.alpha and p < incident.evidence.get(name, math.inf):
                incident.evidence[name] = p
        if block.record is not None and block.record[i] and block.p_value[i] < incident.evidence.get(RANGE, math.inf):
            incident.evidence[RANGE] = float(block.p_value[i])  # beyond every value seen (anomaly.model.novelty)
        incident.detectors = sorted(incident.evidence, key=incident.evidence.get)  # ordered by evidence
        if block.score[i] > incident.peak_score:
            incident.peak_score = float(block.score[i])
            incident.peak_timestamp = float(block.timestamps[i])
            incident.peak_value = float(block.values[i])
            incident.expected, incident.spread = float(block.expected[i]), float(block.spread[i])
        # flags linger after an anomaly while it is inside a detector's window: an incident that
        # flagged any labelled point found that anomaly, wherever its peak fell
        if block.kinds is not None and block.labels is not None and incident.true_kind in ("", "normal"):
            incident.true_kind = block.kinds[i] if block.labels[i] else "normal"
