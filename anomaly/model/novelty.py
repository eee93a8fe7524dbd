"""Values beyond every value a stream has shown: the evidence of a new extreme.

The detectors judge a point against its window: how far it lies from what the points just
before it predict. A slow excursion to a level never seen (a temperature climbing for hours,
a latency creeping to twice its worst) moves a little at each point and stays within every
window's expectation. Its points are still unusual in the simplest sense: each lies beyond
the range of everything the stream has shown, training history included.

Of ``t`` exchangeable values, the last is the largest (or the smallest) with probability at
most ``2 / t``; one beyond that record by a margin ``m`` is rarer still, by about
``exp(-m / step)`` for a tail as wide as the typical change between consecutive points
(``step``: 1.4826 times their median absolute difference, in the series' units). So a point
beyond the range by more than ``RECORD_MARGIN`` steps gets the p-value

    p = min(1, 2 / (t + 1) * exp(-m / step))

and every other point 1. The stream's decision takes the smaller of this and the ensemble's
p-value. The range keeps growing with the stream, so a lasting new level is a record only
while it is new, and a trend the history showed moves the range by less than a step at a time
(no record). Measured on the NAB series in ``../shared/data`` (README, "Evaluate").
"""

from __future__ import annotations

import numpy as np

from .calibration import P_FLOOR, anomaly_score

RECORD_MARGIN = 1.0  # steps beyond the range a value must lie to count as a record (a trend moves it by less)
MAD_TO_SD = 1.4826


def record_step(values: np.ndarray) -> float:
    """Return the typical change between consecutive ``values`` (1.4826 times the median absolute difference,
    in their units), or the mean absolute difference when most are ties; 0 for a constant or a single value."""
    changes = np.abs(np.diff(np.asarray(values, dtype=np.float64)))
    if len(changes) == 0:
        return 0.0
    step = MAD_TO_SD * float(np.median(changes))
    return step if step > 0 else float(changes.mean())


def record_range(values: np.ndarray) -> tuple[float, float, int, float]:
    """Return ``(low, high, seen, step)`` of a history's finite ``values``: what :func:`record_p_values` starts from."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.inf, -np.inf, 0, np.nan
    return float(values.min()), float(values.max()), len(values), record_step(values)


def _p_value(margin: np.ndarray, seen: np.ndarray, step) -> np.ndarray:
    """The record p-value of points ``margin`` beyond a range of ``seen`` values (NaN step: 1)."""
    if not (margin > RECORD_MARGIN * step).any():  # the common case, no record: skipped, as it costs a live point
        return np.ones(len(margin))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.clip(2.0 / (seen + 2.0) * np.exp(-margin / step), P_FLOOR, 1.0)
        # (a range of nothing, infinite: no record)
        return np.where((margin > RECORD_MARGIN * step) & np.isfinite(margin), p, 1.0)


def record_p_values(values: np.ndarray, low: float, high: float, seen: int, step: float
                    ) -> tuple[np.ndarray, float, float, int]:
    """Return the ``(n,)`` record p-values of consecutive ``values`` (see the module), each judged against the
    range of the ``seen`` values before the first (``low``, ``high``) and of those before it in ``values``, and
    the range and count after the last. ``step`` NaN: no evidence (every p-value 1)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.ones(0), low, high, seen
    highs = np.maximum.accumulate(np.concatenate([[high], values]))
    lows = np.minimum.accumulate(np.concatenate([[low], values]))
    margin = np.maximum(values - highs[:-1], lows[:-1] - values)
    p = _p_value(margin, seen + np.arange(len(values), dtype=np.float64), step)
    return p, float(lows[-1]), float(highs[-1]), seen + len(values)


def record_p_rows(values: np.ndarray, low: np.ndarray, high: np.ndarray, seen: np.ndarray, step: np.ndarray
                  ) -> np.ndarray:
    """Return the ``(n,)`` record p-values of one value per row, each against its own range (``low``, ``high``,
    ``seen``, ``step``, each ``(n,)``): :func:`record_p_values` of many series at once. The ranges are not
    updated (the caller does: ``np.minimum(low, values)``...)."""
    margin = np.maximum(values - high, low - values)
    return _p_value(margin, seen.astype(np.float64), step)


def take_records(p_value: np.ndarray, score: np.ndarray, is_anomaly: np.ndarray, record_p: np.ndarray,
                 alpha: float) -> np.ndarray:
    """Lower ``p_value`` to ``record_p`` where that is smaller, with ``score`` and ``is_anomaly`` (all ``(n,)``,
    changed in place) at the threshold ``alpha``; return ``(n,)`` bool: which p-values are now records'."""
    record = record_p < p_value
    if record.any():
        p_value[record] = record_p[record]
        score[record] = anomaly_score(record_p[record], alpha)
        is_anomaly[record] = record_p[record] < alpha
    return record
