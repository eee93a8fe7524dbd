"""Features of a window's last point, shared by the detectors that work on a feature vector.

The Isolation Forest, the k-means distance and the one-class SVM see the same five numbers
per window (see :class:`LagFeatures`), so they differ only in how they judge them.
"""

from __future__ import annotations

import numpy as np

from ..rolling import rolling_median
from .base import check_phase, check_series, check_windows, phase_features

TINY = 1e-6  # scaled units: far below real noise, far above float rounding


class LagFeatures:
    """Lag features of the window's end; a subclass sets ``name``, ``window``, ``period`` and ``recent``.

    Features: the last value's deviation from the median of the ``recent`` values before
    it (a window-wide median kept a level change "anomalous" for half a window after it);
    its step from the previous value; the log of the median absolute step over the last
    ``recent`` points (very low for a stuck sensor, high in a variance burst; a median, so
    that one spike does not linger); and the phase as sine and cosine (a value normal at
    noon may be odd at midnight). No absolute level, so a slow trend does not look anomalous.
    """

    name: str
    window: int
    period: int
    recent: int

    @property
    def _recent(self) -> int:
        """Points before the last that its deviation is measured from (the window must hold them and it)."""
        return min(self.recent, self.window - 1)

    def features(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the ``(n, 5)`` feature matrix the forest sees."""
        windows = check_windows(windows, self.window, self.name)
        phase = check_phase(phase, len(windows), self.period, self.name)
        before = np.median(windows[:, -self._recent - 1:-1], axis=1)
        steps = np.abs(np.diff(windows[:, -self.recent:], axis=1))
        return np.column_stack([
            windows[:, -1] - before,
            windows[:, -1] - windows[:, -2],
            np.log(np.median(steps, axis=1) + TINY),
            phase_features(phase, len(windows), self.period),
        ])

    def features_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the ``(n - window + 1, 5)`` features of every full window of consecutive ``values``.

        ``phase`` is each point's phase, ``(n,)``. Equals :meth:`features` of the sliding
        windows, from rolling medians instead of a median per window.
        """
        values = check_series(values, self.window, self.name)
        phase = check_phase(phase, len(values), self.period, self.name)
        w, last = self.window, values[self.window - 1:]
        before = rolling_median(values[w - 1 - self._recent:-1], self._recent)
        steps = np.abs(np.diff(values))  # steps[k] = |x[k+1] - x[k]|
        # the last `recent` points of the window ending at point t hold steps t-recent+1 .. t-1
        step_median = rolling_median(steps[w - self.recent:], self.recent - 1)
        return np.column_stack([
            last - before,
            last - values[w - 2:-1],
            np.log(step_median + TINY),
            phase_features(None if phase is None else phase[w - 1:], len(last), self.period),
        ])

    def check_recent(self) -> None:
        """Raise ``ValueError`` unless ``recent`` fits the window."""
        if not 2 <= self.recent <= self.window:
            raise ValueError(f"{self.name}: recent must be in [2, window={self.window}], got {self.recent}")
