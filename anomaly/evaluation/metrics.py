"""Detection quality from labels: several views, because each alone misleads (DESIGN.md section 8).

- point-wise precision, recall and F1 over the labelled points;
- event-wise recall (labelled events with at least one flag, from their start to ``grace``
  points after their end), event-wise precision (alarms, i.e. runs of flags, that touch
  a labelled event) and the detection delay in points;
- false alarms per 10,000 normal points, counting only points well clear of any event.

No point-adjusted F1 (a whole event counted as found when one point is): it makes even
random scores look good.

>>> labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
>>> flags = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
>>> m = event_metrics(flags, labels, grace=1, merge=2)
>>> m.recall, m.precision, m.delays
(1.0, 0.5, [1])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..model.windows import runs  # (also this module's: every measure here reads runs of flags)
from ..simulate import Event


@dataclass(frozen=True)
class PointMetrics:
    precision: float
    recall: float
    f1: float


def point_metrics(flags: np.ndarray, labels: np.ndarray) -> PointMetrics:
    """Return point-wise precision, recall and F1 of ``flags`` against ``labels`` (both ``(n,)`` bool).

    An undefined ratio (nothing flagged, or nothing labelled) is NaN.
    """
    flags, labels = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
    hits = int((flags & labels).sum())
    precision = hits / flags.sum() if flags.any() else np.nan
    recall = hits / labels.sum() if labels.any() else np.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else np.nan
    return PointMetrics(float(precision), float(recall), float(f1))


@dataclass(frozen=True)
class EventMetrics:
    events: int  # labelled events
    detected: int  # labelled events with a flag from their start to `grace` points after their end
    alarms: int  # runs of flagged points (merged when fewer than `merge` points apart)
    true_alarms: int  # alarms that touch a labelled event (or its grace period)
    delays: list[int] = field(default_factory=list)  # first flag minus event start, in points

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else float("nan")

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else float("nan")

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else float("nan")


def event_metrics(flags: np.ndarray, labels: np.ndarray, grace: int = 5, merge: int = 5) -> EventMetrics:
    """Return event-wise recall, precision and detection delays of ``flags`` against ``labels``.

    Events are the runs of labelled points. Flags less than ``merge`` points apart form one
    alarm, as one incident would; an alarm is true when it overlaps an event or the
    ``grace`` points after it.
    """
    flags, labels = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
    events = runs(labels)
    reach = labels.copy()
    for start, end in events:
        reach[start:end + grace] = True
    delays, detected = [], 0
    for start, end in events:
        hit = np.flatnonzero(flags[start:end + grace])
        if len(hit):
            detected += 1
            delays.append(int(hit[0]))
    alarms = runs(_merged(flags, merge))
    true_alarms = sum(bool((flags[a:b] & reach[a:b]).any()) for a, b in alarms)
    return EventMetrics(len(events), detected, len(alarms), true_alarms, delays)


def _merged(flags: np.ndarray, merge: int) -> np.ndarray:
    """Fill the gaps shorter than ``merge`` points between flags (they belong to one alarm)."""
    merged = flags.copy()
    flagged = np.flatnonzero(flags)
    for a, b in zip(flagged[:-1], flagged[1:]):
        if 1 < b - a <= merge:
            merged[a:b] = True
    return merged


def false_alarms_per_10k(flags: np.ndarray, labels: np.ndarray, clear: int = 0) -> float:
    """Return flags per 10,000 normal points, counting only points ``clear`` or more after any event."""
    normal = clean_normal(labels, clear + 1) if clear else ~np.asarray(labels, dtype=bool)
    return 1e4 * float(np.asarray(flags, dtype=bool)[normal].mean()) if normal.any() else float("nan")


def event_recall(flags: np.ndarray, events: list[Event], grace: int = 5,
                 scored_from: int = 0) -> dict[str, float]:
    """Return the detected fraction of simulator events per kind and ``"all"``.

    ``flags`` is ``(n,)`` bool; events starting before ``scored_from`` (warm-up) are skipped.
    """
    hits: dict[str, list[bool]] = defaultdict(list)
    for event in events:
        if event.start >= scored_from and event.kind:
            hits[event.kind].append(bool(flags[event.start:event.end + grace].any()))
    result = {kind: float(np.mean(found)) for kind, found in sorted(hits.items())}
    result["all"] = float(np.mean([f for found in hits.values() for f in found])) if hits else float("nan")
    return result


def clean_normal(labels: np.ndarray, window: int) -> np.ndarray:
    """Return ``(n,)`` bool: normal points whose last ``window`` points are all normal.

    A causal windowed detector legitimately reacts while an anomaly is still inside its
    window (for example the step back to normal after a level shift); those points are
    neither anomalies nor fair tests of the false-alarm rate.
    """
    labels = np.asarray(labels, dtype=bool)
    touched = np.convolve(labels.astype(float), np.ones(window), mode="full")[:len(labels)] > 0
    return ~touched


AFTER_EDGES = (1, 10, 33, 100)  # buckets of normal points by distance after an event's end: 1-9, 10-32, 33-99, 100+


@dataclass(frozen=True)
class AfterEvents:
    """Normal points bucketed by how far after the end of the last event they come, and how many were flagged.

    Bucket ``i`` holds the normal points ``edges[i]`` to ``edges[i + 1] - 1`` points after
    the last labelled point before them (the last bucket is open-ended); normal points
    before the first event are in no bucket. A point-faithful detector flags each bucket
    at its false-alarm rate; one whose evidence lingers flags the first buckets far more.
    """

    edges: tuple[int, ...]
    normal: tuple[int, ...]
    flagged: tuple[int, ...]

    def __add__(self, other: AfterEvents) -> AfterEvents:
        if self.edges != other.edges:
            raise ValueError("AfterEvents: cannot add counts over different buckets")
        return AfterEvents(self.edges, tuple(a + b for a, b in zip(self.normal, other.normal)),
                           tuple(a + b for a, b in zip(self.flagged, other.flagged)))

    @property
    def labels(self) -> list[str]:
        """Return each bucket's name, such as ``"10-32"`` or ``"100+"``."""
        ends = [f"-{e - 1}" for e in self.edges[1:]] + ["+"]
        return [f"{start}{end}" for start, end in zip(self.edges, ends)]

    @property
    def rates(self) -> list[float]:
        """Return each bucket's flagged fraction of normal points (NaN when it holds none)."""
        return [f / n if n else float("nan") for f, n in zip(self.flagged, self.normal)]


def after_events(flags: np.ndarray, labels: np.ndarray, edges: tuple[int, ...] = AFTER_EDGES) -> AfterEvents:
    """Return the normal points of ``labels`` bucketed by distance after the last event, and their flags.

    ``flags`` and ``labels`` are ``(n,)`` bool. See :class:`AfterEvents`.

    >>> labels = np.array([0, 1, 1, 0, 0, 0, 0], dtype=bool)
    >>> flags = np.array([1, 0, 1, 1, 0, 0, 1], dtype=bool)
    >>> after_events(flags, labels, edges=(1, 3))
    AfterEvents(edges=(1, 3), normal=(2, 2), flagged=(1, 1))
    """
    flags, labels = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
    index = np.arange(len(labels))
    last_event = np.maximum.accumulate(np.where(labels, index, -1))
    distance = index - last_event
    normal = ~labels & (last_event >= 0)
    bucket = np.searchsorted(np.asarray(edges), distance, side="right") - 1
    counts = np.bincount(bucket[normal & (bucket >= 0)], minlength=len(edges))
    hits = np.bincount(bucket[normal & flags & (bucket >= 0)], minlength=len(edges))
    return AfterEvents(tuple(edges), tuple(int(c) for c in counts), tuple(int(h) for h in hits))


def false_alarm_rate(flags: np.ndarray, normal: np.ndarray) -> float:
    """Return the fraction of ``normal`` points that are flagged."""
    return float(np.asarray(flags)[normal].mean())


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the point-wise ROC AUC of ``scores`` (higher = more anomalous) against labels."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels, dtype=bool), scores))
