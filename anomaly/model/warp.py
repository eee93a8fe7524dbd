"""A variance-stabilising transform of a metric's values, chosen from its history.

A residual is measured in the metric's typical spread. For counts the spread grows with the
rate (Poisson: as its square root), for latencies and bytes with the level itself (a burst of
two million bytes varies by hundreds of thousands, the baseline between by thousands). Scaled by
one spread, the busy stretches look anomalous and the quiet ones blind. The square root (for
counts, Anscombe's ``2 sqrt(x + 3/8)``) and the logarithm make the spread about constant.

:func:`choose_warp` picks one from the history by the Box-Cox rule: the likelihood of the
history's point-to-point changes, each warp's changes taken as normal with one spread (the
largest 2% of them left out), with the Jacobian of the warp (so that squeezing the values is not a gain in itself). A warp other than
none must beat none by a likelihood-ratio test at 1% (``CHI2_1_99``); only histories that never
go below 0, and change at most points, may take one. The warp is one more piece of the scaler (:class:`~anomaly.model.windows.Scaler`)
and is recorded in the run (``ensemble.json``, the manifest's ``warp``).

Below 0, where a warp's root or logarithm is not defined, each continues as the straight line
it has at 0, so any value a stream sends is warped (a value below every one seen is then just
far below). ``inverse`` undoes ``forward`` exactly, up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WARPS = ("none", "sqrt", "log")
CHI2_1_99 = 6.635  # chi-squared with one degree of freedom at 1%: how much better a warp must fit than none
ANSCOMBE = 0.375  # the square root's offset for counts (Anscombe): a Poisson count's spread is then about 1
MIN_CHANGES = 20  # fewest point-to-point changes a warp is chosen from (fewer: none)
TRIM = 0.02  # the share of largest changes left out of their spread: jumps of a cycle, not the spread of its noise


@dataclass(frozen=True)
class Warp:
    """``kind`` ``none``, ``sqrt`` (``2 sqrt(x + offset)``) or ``log`` (``log(x + offset)``); ``offset`` > 0."""

    kind: str = "none"
    offset: float = 0.0

    def __post_init__(self):
        if self.kind not in WARPS:
            raise ValueError(f"warp kind must be one of {WARPS}, got {self.kind!r}")
        if self.kind != "none" and not self.offset > 0:
            raise ValueError(f"a {self.kind} warp needs a positive offset, got {self.offset}")

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` (the series' units) warped."""
        return _forward(self.kind, np.asarray(values, dtype=np.float64), self.offset)

    def inverse(self, warped: np.ndarray) -> np.ndarray:
        """Return warped values in the series' units (:meth:`forward` undone)."""
        return _inverse(self.kind, np.asarray(warped, dtype=np.float64), self.offset)

    def slope(self, values: np.ndarray) -> np.ndarray:
        """Return the derivative of :meth:`forward` at ``values``: warped units per unit of the series."""
        return _slope(self.kind, np.asarray(values, dtype=np.float64), self.offset)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "offset": self.offset}


def _forward(kind: str, x: np.ndarray, c):
    if kind == "none":
        return x
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "sqrt":
            return np.where(x >= 0, 2.0 * np.sqrt(np.maximum(x, 0.0) + c), 2.0 * np.sqrt(c) + x / np.sqrt(c))
        return np.where(x >= 0, np.log(np.maximum(x, 0.0) + c), np.log(c) + x / c)


def _inverse(kind: str, y: np.ndarray, c):
    if kind == "none":
        return y
    if kind == "sqrt":
        at_zero = 2.0 * np.sqrt(c)
        return np.where(y >= at_zero, (np.maximum(y, at_zero) / 2.0) ** 2 - c, (y - at_zero) * np.sqrt(c))
    at_zero = np.log(c)
    with np.errstate(over="ignore"):
        return np.where(y >= at_zero, np.exp(np.maximum(y, at_zero)) - c, (y - at_zero) * c)


def _slope(kind: str, x: np.ndarray, c):
    if kind == "none":
        return np.ones_like(x)
    x = np.maximum(x, 0.0)
    return 1.0 / np.sqrt(x + c) if kind == "sqrt" else 1.0 / (x + c)


def by_rows(function: str, values: np.ndarray, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return ``forward``, ``inverse`` or ``slope`` (``function``) of ``values`` ``(n,)``, row ``i`` by the warp of
    code ``codes[i]`` (its index in :data:`WARPS`) and offset ``offsets[i]``: many series' scalers at once. Rows
    without a warp are given back as they are (``slope``: 1)."""
    apply = {"forward": _forward, "inverse": _inverse, "slope": _slope}[function]
    values = np.asarray(values, dtype=np.float64)
    out = np.ones_like(values) if function == "slope" else values.copy()
    for code in range(1, len(WARPS)):
        rows = codes == code
        if rows.any():
            out[rows] = apply(WARPS[code], values[rows], offsets[rows])
    return out


def candidates(values: np.ndarray) -> list[Warp]:
    """Return the warps a history may take: none, and for values never below 0 the square root and the logarithm
    (offsets: Anscombe's 3/8 and 1 for whole numbers, else the 5% quantile of the positive values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or values.min() < 0:
        return [Warp()]
    if np.array_equal(values, np.round(values)):
        return [Warp(), Warp("sqrt", ANSCOMBE), Warp("log", 1.0)]
    positive = values[values > 0]
    if len(positive) == 0:
        return [Warp()]
    offset = float(np.quantile(positive, 0.05))
    return [Warp(), Warp("sqrt", offset), Warp("log", offset)]


def log_likelihood(values: np.ndarray, warp: Warp) -> float:
    """Return the profile log-likelihood of ``values``' point-to-point changes under ``warp``: the changes of the
    warped values normal with one spread, plus the log Jacobian of the warp (``-inf`` when they do not change).

    The spread is that of the changes without their largest ``TRIM`` share: a daily square wave with additive
    noise jumps from 20 to 80 twice a day, and with those jumps in, the logarithm fitted better (it shrinks
    them). Skewed changes (latencies, bytes) skew the bulk, and the bulk still decides for the logarithm there."""
    values = np.asarray(values, dtype=np.float64)
    changes = np.diff(warp.forward(values))
    deviations = np.abs(changes - np.median(changes))
    kept = deviations[deviations <= np.quantile(deviations, 1 - TRIM)]
    variance = float(np.mean(kept ** 2))
    if not variance > 0:
        return -np.inf
    return -0.5 * len(changes) * np.log(variance) + float(np.log(warp.slope(values[1:])).sum())


def choose_warp(values: np.ndarray) -> Warp:
    """Return the warp of a history ``values`` (see the module): the likeliest of :func:`candidates`, when it beats
    none by the likelihood-ratio test, else none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    # a series that mostly holds its value (a replica count) has no spread of changes to stabilise
    if len(values) <= MIN_CHANGES or 2 * np.count_nonzero(np.diff(values)) < len(values) - 1:
        return Warp()
    options = candidates(values)
    scores = [log_likelihood(values, warp) for warp in options]
    best = int(np.argmax(scores))
    if best == 0 or not np.isfinite(scores[0]) or 2.0 * (scores[best] - scores[0]) <= CHI2_1_99:
        return Warp()
    return options[best]
