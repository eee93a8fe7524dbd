"""Isolation Forest (scikit-learn) on features of each window's last point."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from ..rolling import rolling_median
from .base import (check_phase, check_series, check_windows, phase_features, read_params,
                   require_fitted, write_params)
from .forest import CompiledForest


TINY = 1e-6  # scaled units: far below real noise, far above float rounding


class IForestDetector:
    """Isolation Forest over lag features of the window's end.

    Features: the last value's deviation from the median of the ``recent`` values before
    it (a window-wide median kept a level change "anomalous" for half a window after it);
    its step from the previous value; the log of the median absolute step over the last
    ``recent`` points (very low for a stuck sensor, high in a variance burst; a median, so
    that one spike does not linger); and the phase as sine and cosine (a value normal at
    noon may be odd at midnight). No absolute level, so a slow trend does not look anomalous. The log
    matters: a forest's splits are drawn within the training range, so a stuck sensor
    (steps of exactly 0) is only isolated if the quietest normal windows are, and in log
    space they are. (A "fraction of repeated values" feature was tried: constant in normal
    data, the forest never splits on it. The log of the whole window's median absolute
    deviation was a feature until it was measured to linger: after a simulated flat-line
    it stayed low, and flagged every normal point, until half the window had moved on.)
    """

    name = "iforest"

    def __init__(self, window: int = 32, period: int = 0, n_estimators: int = 200,
                 max_samples: int = 512, recent: int = 8, seed: int = 0):
        self.window = window
        self.period = period
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.recent = recent
        self.seed = seed
        self.forest_ = None  # the fitted sklearn.ensemble.IsolationForest, after fit (never saved: a pickle)
        self.compiled_: CompiledForest | None = None

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

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Fit the forest on normal windows; return ``self``."""
        if not 2 <= self.recent <= self.window:
            raise ValueError(f"iforest: recent must be in [2, window={self.window}], got {self.recent}")
        from sklearn.ensemble import IsolationForest  # here: streaming a saved run never needs scikit-learn

        features = self.features(windows, phase)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(features)),
            random_state=self.seed).fit(features)
        self.compiled_ = CompiledForest(self.forest_)
        return self

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` scores in (0, 1], higher = more anomalous (``-score_samples``)."""
        require_fitted(self, "compiled_")
        return self.compiled_.score(self.features(windows, phase))

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the scores of every full window of consecutive ``values`` (see :meth:`features_series`)."""
        require_fitted(self, "compiled_")
        return self.compiled_.score(self.features_series(values, phase))

    def save(self, directory: Path) -> None:
        require_fitted(self, "compiled_")
        directory = Path(directory)
        write_params(directory, self.name, {
            "window": self.window, "period": self.period, "n_estimators": self.n_estimators,
            "max_samples": self.max_samples, "recent": self.recent, "seed": self.seed})
        np.savez(directory / "compiled.npz", **self.compiled_.to_arrays())

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a saved detector: its compiled forest, numpy arrays only (nothing in a run is unpickled)."""
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        compiled = directory / "compiled.npz"
        if not compiled.is_file():  # older runs kept only a scikit-learn pickle, which is never loaded
            raise ValueError(f"{directory}: saved by an older version without the compiled forest; "
                             "train new models (python train.py)")
        with np.load(compiled, allow_pickle=False) as arrays:
            detector.compiled_ = CompiledForest.from_arrays(arrays)
        return detector
