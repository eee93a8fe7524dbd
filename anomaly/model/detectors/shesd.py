"""Seasonal Hybrid ESD, online (Twitter's S-H-ESD semantics, DESIGN.md section 5).

Training fits the seasonal profile once with robust STL. Online, each window's values
become residuals ``x - seasonal[phase] - median(window)`` (the median stands in for the
trend), and the last point is tested with the generalised ESD on median/MAD statistics.
The last point's deviation is the smaller of its residual and its deviation from the
median of the ``NAIVE`` deseasoned points just before it, so that it is the point's own:
after a level shift the window median stays on the old level for half a window, and every
normal point of the new level would be "anomalous" until then (measured on NAB's
machine_temperature: runs of 5-20 flags after each shift, 202 flags outside the labels).
On a consecutive series (streaming), the median, the MAD and the last point's rank come
from compiled rolling statistics (:mod:`anomaly.model.rolling`): O(window) per point, no STL.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np
from scipy import special

from ..rolling import rolling_exceedances, rolling_median, rolling_median_mad
from .base import (MAD_TO_SD, NAIVE, QUIETEST, check_phase, check_series, check_windows, read_params, require_fitted,
                   write_params)

DIRECTIONS = ("both", "pos", "neg")
SPREAD_FLOOR = 1e-3  # scaled units: the least spread, for series with no noise at all


def esd_critical_values(n: int, max_anoms: int, alpha: float, two_sided: bool = True) -> np.ndarray:
    """Return the generalised ESD critical values ``lambda_1..lambda_k`` for a sample of ``n``.

    Rosner (1983): ``lambda_i = (n-i) t / sqrt((n-i-1+t^2)(n-i+1))`` with ``t`` the
    Student-t quantile at ``1 - alpha / (c (n-i+1))`` on ``n-i-1`` degrees of freedom,
    ``c = 2`` for a two-sided test.
    """
    i = np.arange(1, max_anoms + 1)
    p = 1 - alpha / ((2 if two_sided else 1) * (n - i + 1))
    t = special.stdtrit(n - i - 1, p)  # the Student-t quantile (what scipy.stats.t.ppf computes)
    return (n - i) * t / np.sqrt((n - i - 1 + t**2) * (n - i + 1))


def phase_of_series(last_phase: np.ndarray | None, window: int, period: int) -> np.ndarray | None:
    """Return the phase of every point of a consecutive series, from the phases of its windows' last points."""
    if last_phase is None:
        return None
    return np.concatenate([np.mod(last_phase[0] - np.arange(window - 1, 0, -1), period), last_phase])


class SeriesStats(NamedTuple):
    """Per-window results on a consecutive series, each ``(n - window + 1,)``, scaled units."""

    score: np.ndarray  # ESD statistic of the last point over its critical value
    center: np.ndarray  # expected value of the last point: seasonal profile + deseasoned median
    spread: np.ndarray  # MAD-based standard deviation of the window's residuals


class SHESD:
    """S-H-ESD anomaly score of each window's last point.

    Score: the last point's robust z-score (residual over MAD-scaled spread) divided by the
    ESD critical value for its rank in the window, so a score above 1 is what the
    generalised ESD would call an anomaly at ``alpha``. Higher means more anomalous.
    """

    name = "shesd"
    consecutive_fit = True  # fit reads the series from consecutive windows: training never thins them

    def __init__(self, window: int = 144, period: int = 0, alpha: float = 0.05,
                 max_anoms: float = 0.1, direction: str = "both", stl_periods: int = 14,
                 seed: int = 0):
        self.window = window
        self.period = period
        self.alpha = alpha
        self.max_anoms = max_anoms
        self.direction = direction
        self.stl_periods = stl_periods
        self.seed = seed  # unused: the fit is deterministic; kept for a uniform constructor
        self.profile_: np.ndarray | None = None
        self.floor_ = SPREAD_FLOOR  # the least spread a window is measured with (see fit)

    def _check_params(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"shesd: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"shesd: alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.max_anoms <= 0.49:
            raise ValueError(f"shesd: max_anoms must be in (0, 0.49], got {self.max_anoms}")
        if self.window < 8:
            raise ValueError(f"shesd: window must be at least 8, got {self.window}")

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Learn the seasonal profile from consecutive training windows; return ``self``."""
        self._check_params()
        windows = check_windows(windows, self.window, self.name)
        phase = check_phase(phase, len(windows), self.period, self.name)
        series = windows[:, -1]  # consecutive windows: their last points are the series
        if phase is not None and len(series) >= 2 * self.period:
            from ..seasonality import seasonal_profile  # statsmodels: only needed to fit
            self.profile_ = seasonal_profile(series, phase, self.period, self.stl_periods)
        else:
            self.profile_ = np.zeros(max(self.period, 1))
        # no window is taken as quieter than the quietest normal ones of training: on a stretch
        # of repeated values (a metric that sits at 0 for hours) the MAD is 0, and every
        # ordinary point after it would be hundreds of "sd" away (measured on NAB's
        # rogue_agent_key_hold: 64 flags outside the labels, one every return from zero)
        self.floor_ = SPREAD_FLOOR
        self.floor_ = float(np.quantile(self.series_stats(
            np.concatenate([windows[0, :-1], series]), phase_of_series(phase, self.window, self.period)).spread,
            QUIETEST))
        return self

    @functools.cached_property
    def _critical(self) -> np.ndarray:  # scipy quantiles: computed once, not per scored point
        k = max(1, int(self.max_anoms * self.window))
        return esd_critical_values(self.window, k, self.alpha, self.direction == "both")

    def _window_stats(self, windows: np.ndarray, phase: np.ndarray | None, profile: np.ndarray,
                      floor: float | np.ndarray) -> SeriesStats:
        """Return score, expected value and spread of each window's last point (scaled units).

        ``phase``: each point's phase ``(n, window)``, or ``None``. ``profile``: the seasonal
        profile ``(period,)``, or one per row ``(n, period)``; ``floor``: the least spread, one
        or one per row. The same operations as :meth:`series_stats`, window by window.
        """
        if phase is None:
            deseasoned, seasonal = windows, 0.0
        elif profile.ndim == 1:
            deseasoned, seasonal = windows - profile[phase], profile[phase[:, -1]]
        else:
            rows = np.arange(len(windows))
            deseasoned, seasonal = windows - profile[rows[:, None], phase], profile[rows, phase[:, -1]]
        level = np.median(deseasoned, axis=1)
        residual = deseasoned - level[:, None]
        # a floor on the spread: quantised or flat data has MAD 0
        spread = np.maximum(MAD_TO_SD * np.median(np.abs(residual), axis=1), floor)
        z = self._directed(residual / spread[:, None])
        rank = (z[:, :-1] > z[:, -1:]).sum(axis=1)  # 0 when the last point is the most extreme
        naive = np.median(deseasoned[:, -NAIVE - 1:-1], axis=1)
        last = np.minimum(z[:, -1], self._directed((deseasoned[:, -1] - naive) / spread))
        critical = self._critical
        return SeriesStats(last / critical[np.minimum(rank, len(critical) - 1)], level + seasonal, spread)

    def _windows_of(self, windows, phase) -> SeriesStats:
        """:meth:`_window_stats` of windows whose points are consecutive (``phase``: the last point's, ``(n,)``)."""
        require_fitted(self, "profile_")
        windows = check_windows(windows, self.window, self.name)
        phase = check_phase(phase, len(windows), self.period, self.name)
        if phase is not None:
            phase = np.mod(phase[:, None] + np.arange(self.window) - (self.window - 1), self.period)
        return self._window_stats(windows, phase, self.profile_, self.floor_)

    def expected(self, windows: np.ndarray, phase: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(center, spread)`` of each window's last point, both ``(n,)`` in scaled units.

        ``center`` is seasonal profile plus the window's deseasoned median; ``spread`` is the
        MAD-based standard deviation of the residuals.
        """
        stats = self._windows_of(windows, phase)
        return stats.center, stats.spread

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` scores: ESD statistic of the last point over its critical value."""
        return self._windows_of(windows, phase).score

    def _directed(self, z: np.ndarray) -> np.ndarray:
        """Return standardised deviations ``z`` as the test reads them: higher is more anomalous."""
        if self.direction == "both":
            return np.abs(z)
        return -z if self.direction == "neg" else z

    def series_stats(self, values: np.ndarray, phase: np.ndarray | None = None) -> SeriesStats:
        """Return score, expected value and spread of every full window of consecutive ``values``.

        ``phase`` is each point's phase, ``(n,)``. On consecutive grid points the numbers
        equal :meth:`score` and :meth:`expected` on the sliding windows. Across a gap each
        point is deseasoned at its own phase, where the window methods (which know only the
        last phase) assume the points before it were consecutive.
        """
        require_fitted(self, "profile_")
        values = check_series(values, self.window, self.name)
        phase = check_phase(phase, len(values), self.period, self.name)
        deseasoned = values - self.profile_[phase] if phase is not None else values
        level, mad = rolling_median_mad(deseasoned, self.window)
        spread = np.maximum(MAD_TO_SD * mad, self.floor_)
        rank = rolling_exceedances(deseasoned, self.window, level, spread, self.direction)
        last = deseasoned[self.window - 1:]
        naive = rolling_median(deseasoned[self.window - NAIVE - 1:-1], NAIVE)
        last = np.minimum(self._directed((last - level) / spread), self._directed((last - naive) / spread))
        critical = self._critical
        score = last / critical[np.minimum(rank, len(critical) - 1)]
        seasonal = self.profile_[phase[self.window - 1:]] if phase is not None else 0.0
        return SeriesStats(score, level + seasonal, spread)

    def many_params(self) -> dict[str, float | np.ndarray]:
        """Return the learned numbers :meth:`stats_many` stacks across many series' detectors of these settings."""
        require_fitted(self, "profile_")
        return {"profile": self.profile_, "floor": self.floor_}

    def stats_many(self, params: dict[str, np.ndarray], windows: np.ndarray, phase: np.ndarray | None) -> SeriesStats:
        """Return :meth:`series_stats` of one window per row, each row its own series' detector.

        ``params``: :meth:`many_params` of each row's detector, stacked (``profile`` ``(n, period)``,
        ``floor`` ``(n,)``); their settings (window, period, alpha, direction) are this one's.
        ``windows`` ``(n, window)`` and ``phase`` (each point's, ``(n, window)``, or ``None``).
        """
        phase = phase if self.period >= 2 else None
        return self._window_stats(windows, phase, params["profile"], params["floor"])

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the scores of every full window of consecutive ``values`` (see :meth:`series_stats`)."""
        return self.series_stats(values, phase).score

    def save(self, directory: Path) -> None:
        require_fitted(self, "profile_")
        directory = Path(directory)
        write_params(directory, self.name, {
            "window": self.window, "period": self.period, "alpha": self.alpha,
            "max_anoms": self.max_anoms, "direction": self.direction,
            "stl_periods": self.stl_periods, "seed": self.seed})
        np.savez(directory / "state.npz", profile=self.profile_, floor=self.floor_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        with np.load(directory / "state.npz") as state:
            detector.profile_ = state["profile"]
            if "floor" not in state.files:
                raise ValueError(f"{directory}: saved by an older version whose S-H-ESD scored against the window "
                                 "median alone; train new models (python train.py)")
            detector.floor_ = float(state["floor"])
        return detector
