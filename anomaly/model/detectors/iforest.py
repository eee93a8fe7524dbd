"""Isolation Forest (scikit-learn) on features of each window's last point."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from .base import read_params, require_fitted, write_params
from .features import LagFeatures
from .forest import CompiledForest


class IForestDetector(LagFeatures):
    """Isolation Forest over lag features of the window's end (see :class:`~.features.LagFeatures`).

    The log of the step feature matters: a forest's splits are drawn within the training range, so a stuck sensor
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

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Fit the forest on normal windows; return ``self``."""
        self.check_recent()
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
