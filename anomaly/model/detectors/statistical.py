"""Classic statistical detectors of a window's last point: robust z-score, EWMA and Holt-Winters residuals, ADWIN.

They learn little (a spread, a floor, smoothing constants) and cost a few array operations per window:
the baselines a learned detector has to beat. Each scores with ``score`` on windows and
with ``score_series`` on a consecutive series (rolling statistics, the same numbers).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Self

import numba
import numpy as np

from ..rolling import rolling_median, rolling_median_mad, row_medians
from ..windows import sliding
from .base import (MAD_TO_SD, NAIVE, QUIETEST, check_phase, check_series, check_windows, read_params, require_fitted,
                   write_params)

TINY = 1e-9


def guarded(last: np.ndarray, forecast: np.ndarray, naive: np.ndarray) -> np.ndarray:
    """Return the smaller (in size) of the last point's deviations from ``forecast`` and from ``naive``.

    ``naive`` is the median of the ``NAIVE`` points before the last. A forecast that smoothed
    an anomaly into its state is off for several points after the anomaly ends; the naive
    one is back on track two points later, so the step back to normal is not flagged (as
    for the autoencoders).
    """
    error, naive_error = last - forecast, last - naive
    return np.where(np.abs(naive_error) < np.abs(error), naive_error, error)


def _weighted(windows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return ``(n,)`` each row of ``windows`` weighted by ``weights`` and summed.

    Summed row by row in one order (einsum's own loop), so a row's result does not depend on
    how many rows come with it: a BLAS product may round the last bit differently for a
    block than for one window, and a replay in blocks, a live stream and a tick of many
    series must decide alike."""
    return np.einsum("ij,j->i", windows, weights)


class _Statistical:
    """Shared plumbing: parameters saved as JSON, learned numbers in ``state.npz``."""

    name: str
    window: int
    period: int
    seed: int
    _state: tuple[str, ...] = ()  # learned attributes (without their trailing _), saved and loaded

    def _params(self) -> dict:
        return {"window": self.window, "period": self.period, "seed": self.seed}

    def _check(self, windows, phase) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ``windows`` and ``phase`` checked (see :func:`~.base.check_windows`, :func:`~.base.check_phase`)."""
        windows = check_windows(windows, self.window, self.name)
        return windows, check_phase(phase, len(windows), self.period, self.name)

    def _check_series(self, values, phase) -> tuple[np.ndarray, np.ndarray | None]:
        """Return a consecutive series and its phases, checked."""
        values = check_series(values, self.window, self.name)
        return values, check_phase(phase, len(values), self.period, self.name)

    def save(self, directory: Path) -> None:
        require_fitted(self, self._state[0] + "_")
        directory = Path(directory)
        write_params(directory, self.name, self._params())
        np.savez(directory / "state.npz", **{key: getattr(self, key + "_") for key in self._state})

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        with np.load(directory / "state.npz") as state:
            for key in cls._state:
                value = state[key]
                setattr(detector, key + "_", float(value) if value.ndim == 0 else value)
        return detector


class RobustZScore(_Statistical):
    """How many robust standard deviations the last point lies from the median of the points before it.

    The spread is the MAD of those points, held to at least the 5% quantile of the training
    windows' spreads: after a stuck stretch the MAD is 0 and every ordinary point would
    otherwise be infinitely far off.
    """

    name = "zscore"
    _state = ("floor",)

    def __init__(self, window: int = 32, period: int = 0, seed: int = 0):
        self.window, self.period, self.seed = window, period, seed
        self.floor_ = None

    def _stats(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        before = windows[:, :-1]
        center = np.median(before, axis=1)
        return center, MAD_TO_SD * np.median(np.abs(before - center[:, None]), axis=1)

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Learn the least spread a window is measured with; return ``self``."""
        _, spread = self._stats(self._check(windows, phase)[0])
        self.floor_ = max(float(np.quantile(spread, QUIETEST)), TINY)
        return self

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` |z| of each window's last point."""
        require_fitted(self, "floor_")
        windows, _ = self._check(windows, phase)
        center, spread = self._stats(windows)
        return np.abs(windows[:, -1] - center) / np.maximum(spread, self.floor_)

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return :meth:`score` of every full window of consecutive ``values`` (rolling median and MAD)."""
        require_fitted(self, "floor_")
        values, _ = self._check_series(values, phase)
        center, mad = rolling_median_mad(values[:-1], self.window - 1)
        last = values[self.window - 1:]
        return np.abs(last - center) / np.maximum(MAD_TO_SD * mad, self.floor_)


@functools.lru_cache(maxsize=64)
def _ewma_weights(alpha: float, window: int) -> np.ndarray:
    """EWMA's weights (read-only), made once per alpha and window: a live point used to make them each time."""
    weights = (1 - alpha) ** np.arange(window - 2, -1, -1, dtype=np.float64)
    weights = weights / weights.sum()
    weights.flags.writeable = False
    return weights


class EWMAResidual(_Statistical):
    """The last point's residual from an exponentially weighted moving average of the points before it.

    The forecast weighs the point ``k`` steps back by ``(1 - alpha) ** (k - 1)`` (over the
    window, normalised); the residual (the smaller of it and the naive one, see
    :func:`guarded`) is measured in the typical residual of the training windows (MAD), so a
    score of 5 means five usual forecast errors.
    """

    name = "ewma"
    _state = ("spread",)

    def __init__(self, window: int = 32, period: int = 0, alpha: float = 0.3, seed: int = 0):
        if not 0 < alpha <= 1:
            raise ValueError(f"ewma: alpha must be in (0, 1], got {alpha}")
        self.window, self.period, self.alpha, self.seed = window, period, alpha, seed
        self.spread_ = None

    def _params(self) -> dict:
        return {**super()._params(), "alpha": self.alpha}

    @property
    def _weights(self) -> np.ndarray:
        """Weights of the ``window - 1`` points before the last, oldest first."""
        return _ewma_weights(self.alpha, self.window)

    def _residuals(self, windows: np.ndarray) -> np.ndarray:
        naive = row_medians(windows[:, -NAIVE - 1:-1])
        return guarded(windows[:, -1], _weighted(windows[:, :-1], self._weights), naive)

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Learn the typical forecast error; return ``self``."""
        residuals = self._residuals(self._check(windows, phase)[0])
        self.spread_ = max(MAD_TO_SD * float(np.median(np.abs(residuals - np.median(residuals)))), TINY)
        return self

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` |residual| / typical residual of each window's last point."""
        require_fitted(self, "spread_")
        return np.abs(self._residuals(self._check(windows, phase)[0])) / self.spread_

    def many_params(self) -> dict[str, float]:
        """Return the learned numbers :meth:`score_many` stacks across many series' detectors of these settings."""
        require_fitted(self, "spread_")
        return {"spread": self.spread_}

    def score_many(self, params: dict[str, np.ndarray], windows: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
        """Return :meth:`score` of one window per row, each row its own series' detector (``params``: stacked
        :meth:`many_params`; the settings are this one's)."""
        return np.abs(self._residuals(windows)) / params["spread"]

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return :meth:`score` of every full window of consecutive ``values``."""
        require_fitted(self, "spread_")
        values, _ = self._check_series(values, phase)
        forecast = _weighted(sliding(values[:-1], self.window - 1), self._weights)
        naive = rolling_median(values[self.window - NAIVE - 1:-1], NAIVE)
        return np.abs(guarded(values[self.window - 1:], forecast, naive)) / self.spread_


class ADWINChange(_Statistical):
    """ADWIN's test for a change of level inside the window: the strongest split, over its Bernstein bound.

    For every split of the window into an older and a newer part (each at least
    ``min_part`` points), ADWIN compares the two means with a bound that holds with
    probability ``1 - delta`` when the level did not change; the score is the largest ratio
    of the difference to its bound, so above 1 means ADWIN would cut the window there. The
    variance in the bound is the median of the training windows' variances.
    """

    name = "adwin"
    _state = ("variance",)

    def __init__(self, window: int = 32, period: int = 0, delta: float = 0.002, min_part: int = 4, seed: int = 0):
        if not 1 <= min_part <= window // 2:
            raise ValueError(f"adwin: min_part must be in [1, window // 2 = {window // 2}], got {min_part}")
        self.window, self.period, self.delta, self.min_part, self.seed = window, period, delta, min_part, seed
        self.variance_ = None

    def _params(self) -> dict:
        return {**super()._params(), "delta": self.delta, "min_part": self.min_part}

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Learn the typical within-window variance; return ``self``."""
        windows, _ = self._check(windows, phase)
        self.variance_ = max(float(np.median(windows.var(axis=1))), TINY)
        return self

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` the largest split statistic of each window (above 1: a change)."""
        require_fitted(self, "variance_")
        return self._statistic(self._check(windows, phase)[0])

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return :meth:`score` of every full window of consecutive ``values``."""
        require_fitted(self, "variance_")
        return self._statistic(sliding(self._check_series(values, phase)[0], self.window))

    def _statistic(self, windows: np.ndarray) -> np.ndarray:
        w, parts = self.window, np.arange(self.min_part, self.window - self.min_part + 1)
        totals = np.cumsum(windows, axis=1)
        older = totals[:, parts - 1] / parts
        newer = (totals[:, -1:] - totals[:, parts - 1]) / (w - parts)
        harmonic = 1.0 / (1.0 / parts + 1.0 / (w - parts))
        log_term = np.log(2.0 * np.log(w) / self.delta)  # ADWIN's delta' over the splits it tries
        bound = np.sqrt(2.0 / harmonic * self.variance_ * log_term) + 2.0 / (3.0 * harmonic) * log_term
        return (np.abs(older - newer) / bound).max(axis=1)


@numba.njit(nogil=True, cache=True)
def _holt_forecasts(deseasoned, alpha, beta):  # pragma: no cover (compiled)
    """Return ``(n,)`` the one-step Holt forecast of each row's last point from the points before it: the level
    starts at the row's first point, the trend at 0, and the recursions run over the rest but the last (each
    row its own ``alpha``, ``beta``). Compiled: a live point's row of numpy operations per step cost 0.5 ms."""
    n, width = deseasoned.shape
    out = np.empty(n)
    for i in range(n):
        a, b = alpha[i], beta[i]
        level, trend = deseasoned[i, 0], 0.0
        for k in range(1, width - 1):
            previous = level
            level = a * deseasoned[i, k] + (1 - a) * (level + trend)
            trend = b * (level - previous) + (1 - b) * trend
        out[i] = level + trend
    return out


class HoltWintersResidual(_Statistical):
    """The last point's residual from a Holt-Winters forecast made over the window (statsmodels' smoothing).

    Training fits statsmodels' ``ExponentialSmoothing`` (additive trend, and additive
    seasonality when there is a period) to the training series, which gives the smoothing
    constants and the seasonal profile by phase. A window is scored by running the same
    recursions over its points (level from the first deseasoned point, no trend yet; the
    profile stays as fitted) and comparing its last point with the one-step forecast; the
    residual (the smaller of it and the naive one, see :func:`guarded`) is measured in the
    typical residual of the training windows (MAD).
    """

    name = "holt_winters"
    _state = ("spread", "alpha", "beta", "profile")

    def __init__(self, window: int = 32, period: int = 0, seed: int = 0):
        self.window, self.period, self.seed = window, period, seed
        self.spread_ = self.alpha_ = self.beta_ = None
        self.profile_ = np.zeros(max(period, 1))

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Fit the smoothing constants and profile on the windows' last points, in order; return ``self``."""
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
        from threadpoolctl import threadpool_limits

        windows, phase = self._check(windows, phase)
        series = windows[:, -1]
        seasonal = "add" if phase is not None and len(series) >= 2 * self.period + 10 else None
        # one BLAS thread: the optimiser's matrices are small, and threads that spin beside another busy
        # process made this fit 20x slower (133 s instead of 7 s on 2 cores, measured)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # a fit that stops short of convergence still gives usable constants
            model = ExponentialSmoothing(series, trend="add", seasonal=seasonal,
                                         seasonal_periods=self.period if seasonal else None,
                                         initialization_method="estimated").fit()
        self.alpha_ = float(model.params["smoothing_level"])
        self.beta_ = float(model.params["smoothing_trend"])
        if seasonal:  # the fitted seasonal terms of the last period, by the phase of their point
            self.profile_ = np.zeros(self.period)
            self.profile_[phase[-self.period:]] = model.season[-self.period:]
            self.profile_ -= self.profile_.mean()
        residuals = self._residuals(windows, phase)
        self.spread_ = max(MAD_TO_SD * float(np.median(np.abs(residuals - np.median(residuals)))), TINY)
        return self

    def _window_phases(self, phase: np.ndarray | None) -> np.ndarray | None:
        if phase is None or self.period < 2:
            return None
        return (phase[:, None] - np.arange(self.window - 1, -1, -1)[None, :]) % self.period

    def _residuals(self, windows: np.ndarray, phase: np.ndarray | None, params: dict | None = None) -> np.ndarray:
        """The last point minus the Holt-Winters forecast made from the points before it, ``(n,)``.

        ``params``: each row's own learned numbers (see :meth:`score_many`), else this detector's."""
        alpha, beta, profile = ((self.alpha_, self.beta_, self.profile_) if params is None else
                                (params["alpha"], params["beta"], params["profile"]))
        phases = self._window_phases(phase)
        if phases is None:
            seasonal = np.zeros_like(windows)
        else:
            seasonal = profile[phases] if params is None else profile[np.arange(len(windows))[:, None], phases]
        deseasoned = windows - seasonal
        n = len(windows)
        forecast = _holt_forecasts(np.ascontiguousarray(deseasoned, dtype=np.float64),
                                   np.broadcast_to(np.asarray(alpha, dtype=np.float64), n).copy(),
                                   np.broadcast_to(np.asarray(beta, dtype=np.float64), n).copy())
        naive = row_medians(deseasoned[:, -NAIVE - 1:-1])
        return guarded(deseasoned[:, -1], forecast, naive)

    def many_params(self) -> dict[str, float | np.ndarray]:
        """Return the learned numbers :meth:`score_many` stacks across many series' detectors of these settings."""
        require_fitted(self, "spread_")
        return {"alpha": self.alpha_, "beta": self.beta_, "profile": self.profile_, "spread": self.spread_}

    def score_many(self, params: dict[str, np.ndarray], windows: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
        """Return :meth:`score` of one window per row, each row its own series' detector.

        ``params``: :meth:`many_params` of each row's detector, stacked (``alpha``, ``beta``,
        ``spread`` ``(n,)``, ``profile`` ``(n, period)``); ``phase``: the phase of each
        window's last point ``(n,)``; the settings (window, period) are this one's."""
        return np.abs(self._residuals(windows, phase, params)) / params["spread"]

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` |residual| / typical residual of each window's last point."""
        require_fitted(self, "spread_")
        return np.abs(self._residuals(*self._check(windows, phase))) / self.spread_

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return :meth:`score` of every full window of consecutive ``values``."""
        require_fitted(self, "spread_")
        values, phase = self._check_series(values, phase)
        last = None if phase is None else phase[self.window - 1:]
        return np.abs(self._residuals(sliding(values, self.window), last)) / self.spread_
