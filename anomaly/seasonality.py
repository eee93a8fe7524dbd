"""Seasonal period detection (autocorrelation) and the seasonal profile (robust STL)."""

from __future__ import annotations

import logging

import numpy as np
from scipy.signal import find_peaks
from statsmodels.tsa.seasonal import STL
from statsmodels.tsa.stattools import acf

logger = logging.getLogger(__name__)

MIN_PERIOD = 4
MIN_ACF_PEAK = 0.3  # weaker repetition than this is treated as no seasonality


def detect_period(values: np.ndarray, max_period: int | None = None) -> int:
    """Return the dominant seasonal period in points, or 0 when there is none.

    The autocorrelation of the linearly detrended series is searched for peaks; the
    shortest lag whose peak is within 90% of the highest one wins, so that a multiple of
    the true period (which correlates almost as well) is not chosen. Noise flattens a
    long period's peak, so the winner is refined among its neighbours by the mean
    autocorrelation at its first multiples (an off-by-one period would drift a whole
    point of phase per cycle). At least two full cycles are needed, so ``max_period``
    defaults to a third of the series.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    max_period = min(max_period or n // 3, n // 2)
    if max_period <= MIN_PERIOD:
        return 0
    t = np.arange(n)
    detrended = values - np.polyval(np.polyfit(t, values, 1), t)
    if np.std(detrended) < 1e-12:
        return 0
    corr = acf(detrended, nlags=n // 2, fft=True)
    peaks, _ = find_peaks(corr[:max_period + 1])
    peaks = peaks[(peaks >= MIN_PERIOD) & (corr[peaks] >= MIN_ACF_PEAK)]
    if len(peaks) == 0:
        return 0
    best = corr[peaks].max()
    peak = int(peaks[corr[peaks] >= 0.9 * best][0])
    reach = max(1, peak // 50)
    candidates = range(max(MIN_PERIOD, peak - reach), peak + reach + 1)

    def at_multiples(lag: int) -> float:
        multiples = np.arange(lag, min(4 * lag, n // 2) + 1, lag)
        return float(corr[multiples].mean())

    return max(candidates, key=at_multiples)


def seasonal_profile(values: np.ndarray, phase: np.ndarray, period: int,
                     max_periods: int = 14) -> np.ndarray:
    """Return the ``(period,)`` seasonal component by phase, from a robust STL fit.

    ``values`` must be consecutive points on the grid and ``phase`` their phases. STL is
    fitted on at most the last ``max_periods`` cycles (it costs seconds per thousand
    points); each phase's profile value is the median of STL's seasonal component there,
    centred to median zero so that the level stays in the residual.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = min(len(values), max_periods * period)
    values, phase = values[-keep:], np.asarray(phase)[-keep:]
    if keep < 2 * period:
        raise ValueError(f"STL needs two full periods ({2 * period} points), got {keep}")
    seasonal = STL(values, period=period, robust=True).fit().seasonal
    profile = np.zeros(period)
    for k in range(period):
        at_phase = seasonal[phase == k]
        profile[k] = np.median(at_phase) if len(at_phase) else np.nan
    if np.isnan(profile).any():  # phases never seen: interpolate around the cycle
        known = np.flatnonzero(~np.isnan(profile))
        profile = np.interp(np.arange(period), known, profile[known], period=period)
    return profile - np.median(profile)
