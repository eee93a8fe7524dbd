"""Seasonal Hybrid ESD, online (Twitter's S-H-ESD semantics, DESIGN.md section 5).

Training fits the seasonal profile once with robust STL. Online, each window's values
become residuals ``x - seasonal[phase] - median(window)`` (the median stands in for the
trend), and the last point is tested with the generalised ESD on median/MAD statistics.
On a consecutive series (streaming), the median, the MAD and the last point's rank come
from compiled rolling statistics (:mod:`anomaly.rolling`): O(window) per point, no STL.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np
from scipy import special

from ..rolling import rolling_exceedances, rolling_median_mad
from .base import check_phase, check_series, check_windows, read_params, require_fitted, write_params

DIRECTIONS = ("both", "pos", "neg")
MAD_TO_SD = 1.4826  # MAD of a normal sample times this estimates its standard deviation


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
        return self

    @functools.cached_property
    def _critical(self) -> np.ndarray:  # scipy quantiles: computed once, not per scored point
        k = max(1, int(self.max_anoms * self.window))
        return esd_critical_values(self.window, k, self.alpha, self.direction == "both")

    def _deseasoned(self, windows: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
        if phase is None:
            return windows
        lags = np.arange(self.window) - (self.window - 1)  # position of each column vs the last
        return windows - self.profile_[np.mod(phase[:, None] + lags, self.period)]

    def _residuals(self, windows, phase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return deseasoned level ``(n,)``, residuals ``(n, window)`` and spread ``(n,)``."""
        require_fitted(self, "profile_")
        windows = check_windows(windows, self.window, self.name)
        phase = check_phase(phase, len(windows), self.period, self.name)
        deseasoned = self._deseasoned(windows, phase)
        level = np.median(deseasoned, axis=1)
        residual = deseasoned - level[:, None]
        # a floor on the spread: quantised or flat data has MAD 0
        spread = np.maximum(MAD_TO_SD * np.median(np.abs(residual), axis=1), 1e-3)
        return level, residual, spread

    def expected(self, windows: np.ndarray, phase: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(center, spread)`` of each window's last point, both ``(n,)`` in scaled units.

        ``center`` is seasonal profile plus the window's deseasoned median; ``spread`` is the
        MAD-based standard deviation of the residuals.
        """
        level, _, spread = self._residuals(windows, phase)
        phase = check_phase(phase, len(level), self.period, self.name)
        seasonal = self.profile_[phase] if phase is not None else 0.0
        return level + seasonal, spread

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` scores: ESD statistic of the last point over its critical value."""
        _, residual, spread = self._residuals(windows, phase)
        z = residual / spread[:, None]
        if self.direction == "both":
            z = np.abs(z)
        elif self.direction == "neg":
            z = -z
        last = z[:, -1]
        rank = (z[:, :-1] > last[:, None]).sum(axis=1)  # 0 when the last point is the most extreme
        critical = self._critical
        return last / critical[np.minimum(rank, len(critical) - 1)]

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
        spread = np.maximum(MAD_TO_SD * mad, 1e-3)
        rank = rolling_exceedances(deseasoned, self.window, level, spread, self.direction)
        last = (deseasoned[self.window - 1:] - level) / spread
        if self.direction == "both":
            last = np.abs(last)
        elif self.direction == "neg":
            last = -last
        critical = self._critical
        score = last / critical[np.minimum(rank, len(critical) - 1)]
        seasonal = self.profile_[phase[self.window - 1:]] if phase is not None else 0.0
        return SeriesStats(score, level + seasonal, spread)

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
        np.savez(directory / "state.npz", profile=self.profile_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        with np.load(directory / "state.npz") as state:
            detector.profile_ = state["profile"]
        return detector
