"""Rolling robust statistics of a series, compiled with numba: the hot path of streaming.

For every full window of a 1-D series these return what ``np.median`` (and the median of
absolute deviations) of ``sliding_window_view`` rows would, the same floats (where numpy
says 0.0 these may say -0.0), without building the ``(n, window)`` matrix. A sorted copy of the window is kept and updated in place as it
slides (one value out, one in: O(window) moves, no sort), the median is read off it, and
the MAD merges the distances on both sides of the median outward (O(window)).

>>> import numpy as np
>>> median, mad = rolling_median_mad(np.array([1.0, 5.0, 2.0, 8.0, 3.0]), 3)
>>> median.tolist(), mad.tolist()
([2.0, 5.0, 3.0], [1.0, 3.0, 1.0])
"""

from __future__ import annotations

import numba
import numpy as np

DIRECTIONS = {"both": 0, "pos": 1, "neg": -1}


@numba.njit(nogil=True, cache=True)
def _replace_sorted(window, old, new):  # pragma: no cover (compiled)
    """Remove one ``old`` from the sorted ``window`` and insert ``new``, keeping it sorted."""
    size = window.shape[0]
    i = np.searchsorted(window, old)
    if new >= old:
        j = i + 1
        while j < size and window[j] < new:
            window[j - 1] = window[j]
            j += 1
        window[j - 1] = new
    else:
        j = i
        while j > 0 and window[j - 1] > new:
            window[j] = window[j - 1]
            j -= 1
        window[j] = new


@numba.njit(nogil=True, cache=True)
def _median_sorted(window):  # pragma: no cover (compiled)
    size = window.shape[0]
    half = size // 2
    if size % 2:
        return window[half]
    return (window[half - 1] + window[half]) / 2  # as np.median: the mean of the middle two


@numba.njit(nogil=True, cache=True)
def _mad_sorted(window, center):  # pragma: no cover (compiled)
    """Median of ``|window - center|``: distances merged outward from ``center``."""
    size = window.shape[0]
    right = np.searchsorted(window, center)
    left = right - 1
    previous = 0.0
    current = 0.0
    for _ in range(size // 2 + 1):
        if left < 0:
            distance = abs(window[right] - center)
            right += 1
        elif right >= size:
            distance = abs(window[left] - center)
            left -= 1
        else:
            below = abs(window[left] - center)
            above = abs(window[right] - center)
            if below <= above:
                distance = below
                left -= 1
            else:
                distance = above
                right += 1
        previous, current = current, distance
    if size % 2:
        return current
    return (previous + current) / 2


@numba.njit(nogil=True, cache=True)
def _rolling(values, size, median, mad, with_mad):  # pragma: no cover (compiled)
    window = np.sort(values[:size])
    for j in range(median.shape[0]):
        if j > 0:
            _replace_sorted(window, values[j - 1], values[j + size - 1])
        center = _median_sorted(window)
        median[j] = center
        if with_mad:
            mad[j] = _mad_sorted(window, center)


@numba.njit(nogil=True, cache=True)
def _exceedances(values, center, scale, size, direction, out):  # pragma: no cover (compiled)
    for j in range(out.shape[0]):
        c = center[j]
        s = scale[j]
        last = (values[j + size - 1] - c) / s
        if direction == 0:
            last = abs(last)
        elif direction < 0:
            last = -last
        count = 0
        for k in range(j, j + size - 1):
            z = (values[k] - c) / s
            if direction == 0:
                z = abs(z)
            elif direction < 0:
                z = -z
            if z > last:
                count += 1
        out[j] = count


def _check(values: np.ndarray, size: int) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    if size < 1 or len(values) < size:
        raise ValueError(f"need at least size={size} values for one window, got {len(values)}")
    return values


def rolling_median(values: np.ndarray, size: int) -> np.ndarray:
    """Return the ``(n - size + 1,)`` medians of each full window; row ``j`` ends at ``values[j + size - 1]``."""
    values = _check(values, size)
    median = np.empty(len(values) - size + 1)
    _rolling(values, size, median, median, False)  # no MAD wanted: its output slot is never written
    return median


def row_medians(rows: np.ndarray) -> np.ndarray:
    """Return ``(n,)`` the median of each row of ``rows`` ``(n, k)``: ``np.median(rows, axis=1)``, the same floats,
    without its 10 us of overhead a call (a live point makes a few of these of three values)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"rows must be 2-D with at least one column, got shape {rows.shape}")
    out = np.empty(len(rows))
    _row_medians(rows, out)
    return out


@numba.njit(nogil=True, cache=True)
def _row_medians(rows, out):  # pragma: no cover (compiled)
    for i in range(rows.shape[0]):
        row = np.sort(rows[i])  # (NaN last, as numpy sorts)
        out[i] = np.nan if np.isnan(row[-1]) else _median_sorted(row)


def rolling_median_mad(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each full window's median and median absolute deviation from it, both ``(n - size + 1,)``.

    Same units as ``values``; the MAD is not scaled to a standard deviation.
    """
    values = _check(values, size)
    median = np.empty(len(values) - size + 1)
    mad = np.empty_like(median)
    _rolling(values, size, median, mad, True)
    return median, mad


def rolling_exceedances(values: np.ndarray, size: int, center: np.ndarray, scale: np.ndarray,
                        direction: str = "both") -> np.ndarray:
    """Return, per full window, how many of its earlier points are more extreme than its last.

    "Extreme" is the standardised deviation ``z = (x - center) / scale`` of the window, as an
    absolute value (``both``), as is (``pos``) or negated (``neg``). Returns int64 ``(n - size + 1,)``:
    0 when the last point is the most extreme, which is its rank in the generalised ESD.
    """
    values = _check(values, size)
    count = len(values) - size + 1
    center = np.ascontiguousarray(center, dtype=np.float64)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    if center.shape != (count,) or scale.shape != (count,):
        raise ValueError(f"center and scale must have shape ({count},)")
    out = np.empty(count, dtype=np.int64)
    _exceedances(values, center, scale, size, DIRECTIONS[direction], out)
    return out
