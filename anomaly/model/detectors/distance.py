"""Two detectors that judge the forest's window features by distance: k-means and a one-class SVM.

Both standardise the features robustly (median and interquartile range of the training
windows), so that no feature dominates a distance by its units. Their fitted state is
saved as numpy arrays and scored with numpy: scikit-learn is needed to fit, not to stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from .base import read_params, require_fitted, write_params
from .features import LagFeatures

MIN_SCALE = 1e-6  # a feature constant in training (the phase without a period) keeps unit scale


def squared_distances(rows: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Return ``(n, m)`` squared Euclidean distances between ``rows`` ``(n, d)`` and ``points`` ``(m, d)``."""
    squared = (rows ** 2).sum(axis=1)[:, None] + (points ** 2).sum(axis=1)[None, :] - 2.0 * rows @ points.T
    return np.maximum(squared, 0.0)


class _Standardised(LagFeatures):
    """Lag features, centred and scaled by the training windows' median and interquartile range.

    A subclass sets ``center_`` and ``scale_`` to ``None`` until :meth:`_fit_scaling`.
    """

    def _fit_scaling(self, features: np.ndarray) -> np.ndarray:
        self.center_ = np.median(features, axis=0)
        q75, q25 = np.percentile(features, [75, 25], axis=0)
        self.scale_ = np.where(q75 - q25 > MIN_SCALE, (q75 - q25) / 1.349, 1.0)  # an IQR in sd units
        return self._standardise(features)

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.center_) / self.scale_

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` scores, higher = further from the normal windows."""
        require_fitted(self, "center_")
        return self._judge(self._standardise(self.features(windows, phase)))

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the scores of every full window of consecutive ``values`` (rolling features)."""
        require_fitted(self, "center_")
        return self._judge(self._standardise(self.features_series(values, phase)))

    def _judge(self, standardised: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KMeansDetector(_Standardised):
    """Distance from a window's features to the nearest of ``n_clusters`` k-means centroids (MiniBatchKMeans)."""

    name = "kmeans"

    def __init__(self, window: int = 32, period: int = 0, n_clusters: int = 16, recent: int = 8, seed: int = 0):
        self.window, self.period, self.n_clusters, self.recent, self.seed = window, period, n_clusters, recent, seed
        self.center_ = self.scale_ = self.centroids_ = None

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Fit the centroids on normal windows; return ``self``."""
        from sklearn.cluster import MiniBatchKMeans

        self.check_recent()
        features = self._fit_scaling(self.features(windows, phase))
        model = MiniBatchKMeans(n_clusters=min(self.n_clusters, len(features)), random_state=self.seed, n_init=3)
        self.centroids_ = model.fit(features).cluster_centers_
        return self

    def _judge(self, standardised: np.ndarray) -> np.ndarray:
        return np.sqrt(squared_distances(standardised, self.centroids_).min(axis=1))

    def save(self, directory: Path) -> None:
        require_fitted(self, "centroids_")
        directory = Path(directory)
        write_params(directory, self.name, {"window": self.window, "period": self.period,
                                            "n_clusters": self.n_clusters, "recent": self.recent, "seed": self.seed})
        np.savez(directory / "state.npz", center=self.center_, scale=self.scale_, centroids=self.centroids_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        with np.load(directory / "state.npz") as state:
            detector.center_, detector.scale_, detector.centroids_ = state["center"], state["scale"], state["centroids"]
        return detector


class OneClassSVMDetector(_Standardised):
    """A one-class SVM with an RBF kernel on the window features: how far outside the normal region a window lies.

    scikit-learn's ``SGDOneClassSVM`` on a ``Nystroem`` approximation of the kernel (linear in
    the number of windows, where ``OneClassSVM`` is quadratic: tens of thousands of training
    windows fit in seconds). ``nu`` bounds the share of training windows left outside.
    """

    name = "ocsvm"

    def __init__(self, window: int = 32, period: int = 0, nu: float = 0.05, n_components: int = 100,
                 gamma: float = 0.0, recent: int = 8, seed: int = 0):
        """``gamma`` 0: one over the number of features (on standardised features, a kernel width of about 1 sd)."""
        self.window, self.period, self.nu, self.n_components = window, period, nu, n_components
        self.gamma, self.recent, self.seed = gamma, recent, seed
        self.center_ = self.scale_ = self.components_ = self.normalization_ = self.coef_ = None
        self.offset_ = 0.0

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Fit the kernel approximation and the SVM on normal windows; return ``self``."""
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import SGDOneClassSVM

        self.check_recent()
        features = self._fit_scaling(self.features(windows, phase))
        gamma = self.gamma or 1.0 / features.shape[1]
        kernel = Nystroem(gamma=gamma, n_components=min(self.n_components, len(features)), random_state=self.seed)
        embedded = kernel.fit_transform(features)
        svm = SGDOneClassSVM(nu=self.nu, random_state=self.seed).fit(embedded)
        self.components_, self.normalization_ = kernel.components_, kernel.normalization_
        self.coef_, self.offset_ = svm.coef_.ravel(), float(np.ravel(svm.offset_)[0])
        self._gamma = gamma
        return self

    def _judge(self, standardised: np.ndarray) -> np.ndarray:
        embedded = np.exp(-self._gamma * squared_distances(standardised, self.components_)) @ self.normalization_.T
        return self.offset_ - embedded @ self.coef_  # minus the SVM's decision function

    def save(self, directory: Path) -> None:
        require_fitted(self, "coef_")
        directory = Path(directory)
        write_params(directory, self.name, {"window": self.window, "period": self.period, "nu": self.nu,
                                            "n_components": self.n_components, "gamma": self.gamma,
                                            "recent": self.recent, "seed": self.seed})
        np.savez(directory / "state.npz", center=self.center_, scale=self.scale_, components=self.components_,
                 normalization=self.normalization_, coef=self.coef_, offset=self.offset_, kernel_gamma=self._gamma)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        with np.load(directory / "state.npz") as state:
            detector.center_, detector.scale_ = state["center"], state["scale"]
            detector.components_, detector.normalization_ = state["components"], state["normalization"]
            detector.coef_, detector.offset_ = state["coef"], float(state["offset"])
            detector._gamma = float(state["kernel_gamma"])
        return detector
