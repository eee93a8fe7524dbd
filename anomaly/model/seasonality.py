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
MIN_PROMINENCE = 0.1  # how far an autocorrelation peak must rise above the dip before it


CALENDAR_S = (86_400, 3_600)  # a day, an hour: the cycles metrics follow, in seconds


def detect_period(values: np.ndarray, max_period: int | None = None, interval: float | None = None) -> int:
    """Return the dominant seasonal period in points, or 0 when there is none.

    With the sampling ``interval`` in seconds (from the timestamps), calendar cycles (a day,
    an hour) are candidates too: one that repeats in the data at least 90% as strongly as
    the best autocorrelation peak wins, since its length is exact while a peak of noisy data
    can be a point off.

    The autocorrelation of the linearly detrended series is searched for peaks; the
    shortest lag whose peak is within 90% of the highest one wins, so that a multiple of
    the true period (which correlates almost as well) is not chosen. Noise flattens a
    long period's peak, so the winner is refined among its neighbours by the mean
    autocorrelation at its first multiples (an off-by-one period would drift a whole
    point of phase per cycle). A peak alone must repeat three times (``max_period``
    defaults to a third of the series); a calendar cycle, expected in metrics, is taken
    from two full cycles (half the series), so that a two-day history finds its day.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    calendar_max = min(max_period or n // 2, n // 2)  # a calendar cycle is expected: two cycles show it
    max_period = min(max_period or n // 3, n // 2)
    if calendar_max <= MIN_PERIOD:
        return 0
    t = np.arange(n)
    detrended = values - np.polyval(np.polyfit(t, values, 1), t)
    if np.std(detrended) < 1e-12:
        return 0
    corr = acf(detrended, nlags=n // 2, fft=True)
    # a period stands out: noise makes small wiggles on the slope of a smooth series' autocorrelation
    peaks, _ = find_peaks(corr[:calendar_max + 2], prominence=MIN_PROMINENCE)
    peaks = peaks[(peaks >= MIN_PERIOD) & (corr[peaks] >= MIN_ACF_PEAK)]
    found = _autocorrelation_period(corr, n, peaks[peaks <= max_period])
    for cycle in CALENDAR_S if interval else ():
        points = cycle / interval
        lag = int(round(points))
        if abs(points - lag) > 0.01 * points or not MIN_PERIOD <= lag <= calendar_max:
            continue  # the interval does not divide the cycle, or too few cycles to see it
        if not (np.abs(peaks - lag) <= max(1, 0.02 * lag)).any():
            continue  # the data does not repeat there (a smooth series correlates at every short lag)
        strength = _at_multiples(corr, lag, n)
        if strength >= MIN_ACF_PEAK and (not found or strength >= 0.9 * _at_multiples(corr, found, n)):
            return lag
    return found


def _at_multiples(corr: np.ndarray, lag: int, n: int) -> float:
    """Mean autocorrelation at the first multiples of ``lag`` (up to 4, within the series)."""
    multiples = np.arange(lag, min(4 * lag, n // 2) + 1, lag)
    return float(corr[multiples].mean())


def _autocorrelation_period(corr: np.ndarray, n: int, peaks: np.ndarray) -> int:
    """The period from the autocorrelation ``peaks`` alone (see :func:`detect_period`), or 0."""
    if len(peaks) == 0:
        return 0
    best = corr[peaks].max()
    peak = int(peaks[corr[peaks] >= 0.9 * best][0])
    reach = max(1, peak // 50)
    candidates = range(max(MIN_PERIOD, peak - reach), peak + reach + 1)
    return max(candidates, key=lambda lag: _at_multiples(corr, lag, n))


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
