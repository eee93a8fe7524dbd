"""Detection quality from labels: event recall, false alarms on normal points, ROC AUC.

Several views, because each alone misleads (DESIGN.md section 8). An event counts as
detected when any of its points, or the ``grace`` points after it, is flagged.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

from .simulate import Event


def event_recall(flags: np.ndarray, events: list[Event], grace: int = 5,
                 scored_from: int = 0) -> dict[str, float]:
    """Return the detected fraction of events per kind and ``"all"``.

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


def false_alarm_rate(flags: np.ndarray, normal: np.ndarray) -> float:
    """Return the fraction of ``normal`` points that are flagged."""
    return float(np.asarray(flags)[normal].mean())


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the point-wise ROC AUC of ``scores`` (higher = more anomalous) against labels."""
    return float(roc_auc_score(np.asarray(labels, dtype=bool), scores))
