"""Stuck values: a run of repeats that the history says this value does not make.

A sensor or exporter that stops updating repeats its last reading; a service that stops
sending shows zeros. The forecasting detectors see nothing then: a value stuck at its level
leaves no residual. What is unusual is the run itself, and how unusual depends on the value:
a count sits at 0 for a while at night, a utilisation at 100% at peak, a replica count
holds for hours, while a temperature with two decimals hardly ever repeats.

:class:`Repeats` learns from the training windows how often each value repeats the one
before (the ``TABLE`` values seen most often, each with at least ``MIN_SEEN`` chances, each
rate shrunk toward the series' own; every other value, seen or not, takes the series' rate). The score of a point is the surprise of the run of repeats
that ends there under the history's own rate of its value: ``-log(rate ** run / (1 - rate))``,
at least 0. Under that rate, a run reaches ``run`` repeats with chance ``rate ** run``, and a
point lies in such a run (at its end or further in) with chance ``rate ** run / (1 - rate)``:
the score is ``-log`` of a p-value, and its calibrator takes that tail beyond its sample
(``log_p_scores``; see :class:`~anomaly.model.calibration.Calibrator`). A run is counted within
the window, so it spans at most ``window - 1`` repeats, and it ends with the first new value:
the step back from a stuck value is not flagged.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from .base import check_phase, check_series, require_fitted
from .statistical import _Statistical

TABLE = 32  # values kept with a repeat rate of their own (the most frequent: 0 of a count, 100 of a percentage)
MIN_SEEN = 5  # times a value must come before another point to get a rate of its own


class Repeats(_Statistical):
    """The surprise of the run of repeated values that ends at the window's last point, as ``-log`` of a p-value
    (see the module)."""

    name = "repeats"
    finds = "stuck"  # what it looks for (the contract suite injects it): not a spike, a value that stops changing
    log_p_scores = True  # a score is -log of its model's p-value (see the module)
    _state = ("values", "surprise", "default")

    def __init__(self, window: int = 32, period: int = 0, seed: int = 0):
        self.window, self.period, self.seed = window, period, seed
        self.values_ = self.surprise_ = self.default_ = None

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Learn how often each value repeats the one before it; return ``self``."""
        windows, _ = self._check(windows, phase)
        before, last = windows[:, -2], windows[:, -1]
        repeated = last == before
        values, inverse, seen = np.unique(before, return_inverse=True, return_counts=True)
        repeats = np.bincount(inverse, weights=repeated, minlength=len(values))
        candidates = np.flatnonzero((seen >= MIN_SEEN) & (repeats > 0))
        kept = candidates[np.argsort(-seen[candidates], kind="stable")[:TABLE]]
        # every other value (seldom or never seen) repeats as the series' values do on the whole (a replica count
        # that reaches a new level holds it; a utilisation stuck below its 100% repeats as rarely as it repeats at
        # all). That rate is Laplace's, one repeat and one change more than seen: a rate of repeats too rare to be
        # seen in a short history is not taken as none (a single repeat of a value with three decimals, seen in
        # none of 600 points and then in 3 of 1,000, was an alarm each time)
        rest_rate = (repeats.sum() + 1.0) / (seen.sum() + 2.0)
        rates = (repeats[kept] + rest_rate) / (seen[kept] + 1.0)  # shrunk toward it by one chance
        order = np.argsort(values[kept])
        table = np.full(TABLE, np.nan)
        surprise = np.zeros(TABLE)
        table[:len(kept)], surprise[:len(kept)] = values[kept][order], -np.log(rates[order])
        self.values_, self.surprise_, self.default_ = table, surprise, float(-np.log(rest_rate))
        return self

    @staticmethod
    def _scored(runs: np.ndarray, surprise: np.ndarray) -> np.ndarray:
        """Return ``-log(rate ** runs / (1 - rate))`` at least 0, with ``surprise = -log(rate)``: the module's score."""
        return np.maximum(runs * surprise + np.log1p(-np.exp(-surprise)), 0.0)

    def _surprise(self, last: np.ndarray, table: np.ndarray, surprise: np.ndarray, default) -> np.ndarray:
        """Return ``(n,)`` the surprise of one repeat of each value of ``last``, by ``table`` (rows of their own
        when 2-D, one series' detector each)."""
        if table.ndim == 1:
            known = int(np.count_nonzero(~np.isnan(table)))
            at = np.minimum(np.searchsorted(table[:known], last), max(known - 1, 0))
            hit = (known > 0) & (table[at] == last)
            return np.where(hit, surprise[at], default)
        hit = table == last[:, None]  # (NaN never equals: the padding never matches)
        return np.where(hit.any(axis=1), (surprise * hit).sum(axis=1), default)

    @staticmethod
    def _runs(windows: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` the repeats of each window's last value that end there, within the window."""
        same = windows[:, 1:] == windows[:, :-1]
        backwards = same[:, ::-1]
        return np.where(backwards.all(axis=1), same.shape[1], np.argmin(backwards, axis=1))

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` the surprise of the run of repeats ending at each window's last point."""
        require_fitted(self, "values_")
        windows, _ = self._check(windows, phase)
        return self._scored(self._runs(windows), self._surprise(windows[:, -1], self.values_, self.surprise_,
                                                                self.default_))

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return :meth:`score` of every full window of consecutive ``values`` (runs counted in one pass)."""
        require_fitted(self, "values_")
        values = check_series(values, self.window, self.name)
        check_phase(phase, len(values), self.period, self.name)
        index = np.arange(len(values))
        changed = np.concatenate([[True], values[1:] != values[:-1]])
        run = index - np.maximum.accumulate(np.where(changed, index, 0))
        last = values[self.window - 1:]
        runs = np.minimum(run[self.window - 1:], self.window - 1)
        return self._scored(runs, self._surprise(last, self.values_, self.surprise_, self.default_))

    def many_params(self) -> dict[str, np.ndarray | float]:
        """Return the learned numbers :meth:`score_many` stacks across many series' detectors."""
        require_fitted(self, "values_")
        return {"values": self.values_, "surprise": self.surprise_, "default": self.default_}

    def score_many(self, params: dict[str, np.ndarray], windows: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
        """Return :meth:`score` of one window per row, each row its own series' detector (``params``: stacked
        :meth:`many_params`)."""
        return self._scored(self._runs(windows), self._surprise(windows[:, -1], params["values"], params["surprise"],
                                                                params["default"]))

