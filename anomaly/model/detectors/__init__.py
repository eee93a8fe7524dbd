"""Detectors behind one protocol, registered by name (see :mod:`anomaly.model.detectors.base`)."""

from __future__ import annotations

from ...config import Config
from .base import Detector, NotFittedError
from .dense_ae import DenseAutoencoder
from .distance import KMeansDetector, OneClassSVMDetector
from .iforest import IForestDetector
from .lstm_ae import LSTMAutoencoder
from .repeats import Repeats
from .shesd import SHESD
from .statistical import ADWINChange, EWMAResidual, HoltWintersResidual, RobustZScore

REGISTRY: dict[str, type] = {
    "dense_ae": DenseAutoencoder,
    "lstm_ae": LSTMAutoencoder,
    "iforest": IForestDetector,
    "shesd": SHESD,
    "ocsvm": OneClassSVMDetector,
    "kmeans": KMeansDetector,
    "zscore": RobustZScore,
    "ewma": EWMAResidual,
    "holt_winters": HoltWintersResidual,
    "adwin": ADWINChange,
    "repeats": Repeats,
}

# learn the shape of windows, not one series' level or season: in a run of many series they learn once,
# on every series' windows pooled (see anomaly.model.training.train_pooled)
SHAPE_LEARNERS = frozenset({"dense_ae", "lstm_ae", "iforest", "ocsvm", "kmeans"})


def shesd_window(config: Config, period: int) -> int:
    """Return the S-H-ESD window: configured, else one period clipped to [64, 512] points."""
    if config.windows.shesd_size:
        return config.windows.shesd_size
    return int(min(max(period, 64), 512))


def build(name: str, config: Config, period: int, seed: int) -> Detector:
    """Return an unfitted detector ``name`` with its settings from ``config``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(REGISTRY)}")
    params = vars(getattr(config.detectors, name)).copy()
    if name == "shesd":
        params.pop("stl_periods")
        return SHESD(window=shesd_window(config, period), period=period, seed=seed,
                     stl_periods=config.detectors.shesd.stl_periods, **params)
    return REGISTRY[name](window=config.windows.size, period=period, seed=seed, **params)


__all__ = ["REGISTRY", "SHAPE_LEARNERS", "Detector", "NotFittedError", "build", "shesd_window"]
