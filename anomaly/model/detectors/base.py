"""The detector protocol and the checks every detector shares.

A detector turns windows of scaled values into raw anomaly scores (higher = more
anomalous). Scores are not comparable between detectors: :mod:`anomaly.model.calibration`
turns them into p-values. A window's score belongs to its last point.

A detector may also offer ``score_series(values, phase)``: the scores of every full window
of a consecutive series, computed without building the windows (rolling statistics). It
must equal ``score`` on the sliding windows; :func:`score_consecutive` uses it when present.
``score`` knows only each window's last phase and takes its points to be consecutive on the
sampling grid; ``score_series`` gets every point's phase, so across a gap in the grid a
seasonal detector uses each point's true phase there (see S-H-ESD).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

NAIVE = 3  # points before the scored one whose median is the naive forecast (autoencoders, S-H-ESD, forecasts)
MAD_TO_SD = 1.4826  # MAD of a normal sample times this estimates its standard deviation
QUIETEST = 0.05  # quantile of the training windows' spreads that any window's spread is held to (S-H-ESD, z-score)


class NotFittedError(RuntimeError):
    """Raised when ``score`` or ``save`` is called before ``fit``."""


@runtime_checkable
class Detector(Protocol):
    """What the ensemble needs of a detector.

    ``phase`` is the seasonal phase (int in ``[0, period)``) of each window's last point,
    or ``None`` when the series has no period.
    """

    name: str
    window: int

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self: ...

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


def check_windows(windows: np.ndarray, window: int, name: str, min_rows: int = 1) -> np.ndarray:
    """Return ``windows`` as a float64 ``(n, window)`` array or raise a ``ValueError`` saying why."""
    array = np.asarray(windows, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != window:
        raise ValueError(f"{name}: windows must have shape (n, {window}), got {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} windows, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: windows contain NaN or infinite values")
    return array


def check_series(values: np.ndarray, window: int, name: str) -> np.ndarray:
    """Return ``values`` as a finite float64 1-D array of at least ``window`` points or raise ``ValueError``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) < window:
        raise ValueError(f"{name}: need a 1-D series of at least {window} values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: values contain NaN or infinite values")
    return array


def score_consecutive(detector: Detector, values: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
    """Return ``(n - window + 1,)`` scores of every full window of the consecutive series ``values``.

    ``phase`` holds each point's phase, ``(n,)``, or is ``None``. Row ``j`` belongs to point
    ``j + window - 1``. Uses the detector's ``score_series`` when it has one (same numbers,
    faster), else ``score`` on the sliding windows.
    """
    fast = getattr(detector, "score_series", None)
    if fast is not None:
        return fast(values, phase)
    from ..windows import sliding

    window = detector.window
    return detector.score(sliding(values, window), None if phase is None else phase[window - 1:])


def check_phase(phase: np.ndarray | None, n: int, period: int, name: str) -> np.ndarray | None:
    """Return ``phase`` as int64 ``(n,)`` (or ``None`` without a period) or raise ``ValueError``."""
    if period < 2 or phase is None:
        return None
    phase = np.asarray(phase)
    if phase.shape != (n,):
        raise ValueError(f"{name}: phase must have shape ({n},), got {phase.shape}")
    if phase.min(initial=0) < 0 or phase.max(initial=0) >= period:
        raise ValueError(f"{name}: phase must lie in [0, {period})")
    return phase.astype(np.int64)


def phase_features(phase: np.ndarray | None, n: int, period: int) -> np.ndarray:
    """Return ``(n, 2)`` sine and cosine of the phase angle (zeros without a period)."""
    if phase is None or period < 2:
        return np.zeros((n, 2))
    angle = 2 * np.pi * phase / period
    return np.column_stack([np.sin(angle), np.cos(angle)])


def require_fitted(detector, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``detector`` has the learned ``attribute``."""
    if getattr(detector, attribute, None) is None:
        raise NotFittedError(f"{detector.name}: call fit() before score() or save()")


def write_params(directory: Path, name: str, params: dict) -> None:
    """Write a detector's hyperparameters to ``directory/config.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"detector": name, "params": params}, indent=2))


def read_params(directory: Path, name: str) -> dict:
    """Return the hyperparameters stored by :func:`write_params`, checking the detector name."""
    stored = json.loads((Path(directory) / "config.json").read_text())
    if stored.get("detector") != name:
        raise ValueError(f"{directory} holds a {stored.get('detector')!r} detector, not {name!r}")
    return stored["params"]
