"""What the two Keras autoencoders share: training, last-point scoring, persistence.

Keras trains the model; scoring runs its ONNX export (:mod:`.onnx_export`) in ONNX
Runtime. TensorFlow is imported only to train, so streaming a saved run never loads it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Self

import numpy as np

from ... import progress
from ..rolling import rolling_median, rolling_median_mad
from ..windows import sliding
from .base import MAD_TO_SD, NAIVE, check_phase, check_series, check_windows, read_params, require_fitted, write_params
from .onnx_export import session, to_onnx

SCORE_BATCH = 1024  # windows per ONNX Runtime call: the fastest size measured here
CLIP = 4.0  # past points further than this many robust sd from the past's median are winsorised
SPREAD_FLOOR = 1e-3  # scaled units: the least clipping scale, for series with no noise at all


def keras():
    """Return the ``keras`` module, importing TensorFlow quietly on first use.

    TensorFlow's C++ start-up prints CUDA probing lines straight to file descriptor 2
    (before its own log level applies); they are noise on a CPU machine, so stderr is
    muted for the duration of the import. Python errors still surface as exceptions.
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                import tensorflow  # noqa: F401  (the noisy part)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        # retracing notes when many small models are trained in one process (NAB): not for users
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    import keras as _keras

    return _keras


def masked(windows: np.ndarray, floor: float, median: np.ndarray | None = None,
           mad: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return what the model sees of each window and the value it must predict, ``(n, window)`` and ``(n,)``.

    The last point, the one scored, is hidden (set to 0, the median of the points before
    it), so the model forecasts it from its past: its error is evidence about that point
    alone. The past is centred on its own median and winsorised at ``CLIP`` robust
    standard deviations (at least ``floor``, the typical one of normal windows), so that
    an earlier outlier cannot bend the forecast of the points after it, and a stuck,
    flat past does not make the normal noise after it look huge. ``median`` and ``mad``
    of the past ``window - 1`` points, ``(n,)``, may be passed when known (rolling
    statistics); scaled units throughout.
    """
    past = windows[:, :-1]
    if median is None:
        median = np.median(past, axis=1)
    if mad is None:
        mad = np.median(np.abs(past - median[:, None]), axis=1)
    bound = (CLIP * np.maximum(MAD_TO_SD * mad, floor))[:, None]
    inputs = np.zeros(windows.shape)
    inputs[:, :-1] = np.clip(past - median[:, None], -bound, bound)
    return inputs, windows[:, -1] - median


def _evidence(values: np.ndarray, model_error: np.ndarray, naive: np.ndarray) -> np.ndarray:
    """Return ``(n,)`` the smaller of the model's absolute forecast error and the naive forecast's."""
    return np.minimum(np.abs(model_error), np.abs(values - naive))


class KerasAutoencoder:
    """Base class: subclasses set ``name`` and implement ``_build(keras)`` and ``_params()``.

    The model sees the window with its last point hidden (:func:`masked`) and rebuilds the
    whole window, the hidden point included: it forecasts the scored point from the points
    before it. The score is that forecast's absolute error, or the error of the naive
    forecast (the median of the ``NAIVE`` points before) when that is smaller. Both belong
    to the scored point alone. The naive forecast covers what the model was never shown:
    after a stuck stretch or a jump, its past holds a step that no normal window has, and
    its forecast stays off for as long as the step is in the window (measured: every
    normal point 1-16 points after a simulated flat-line was flagged); the naive forecast
    is back on track two points after the step. (An earlier score mixed in the whole window's reconstruction error: every
    point within a window after an anomaly then scored high too, and 50-70% of the normal
    points just after an event were flagged.)

    Learned state: ``graph_`` (the ONNX bytes every score comes from) and the Keras model
    (``model_`` after ``fit``; after ``load`` only its file bytes, kept for saving again).
    """

    name = "autoencoder"
    epochs: int
    batch_size: int
    learning_rate: float

    def __init__(self, window: int, period: int, seed: int):
        self.window = window
        self.period = period  # the models see values only; kept for a uniform constructor
        self.seed = seed
        self.model_ = None
        self.spread_: float | None = None  # typical robust sd of a normal window's past (scaled units)
        self.graph_: bytes | None = None
        self._keras_file: bytes | None = None
        self._session = None

    def _build(self, keras):
        raise NotImplementedError

    def _params(self) -> dict:
        raise NotImplementedError

    def _shaped(self, x: np.ndarray) -> np.ndarray:
        """Return ``(n, window)`` model inputs in the layout the Keras model takes."""
        return x.astype(np.float32)

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Train on normal windows (10% held back for early stopping); return ``self``."""
        windows = check_windows(windows, self.window, self.name, min_rows=10)
        check_phase(phase, len(windows), self.period, self.name)
        k = keras()
        k.utils.set_random_seed(self.seed)
        model = self._build(k)
        model.compile(optimizer=k.optimizers.Adam(self.learning_rate), loss="mse")
        past = windows[:, :-1]
        mad = np.median(np.abs(past - np.median(past, axis=1, keepdims=True)), axis=1)
        self.spread_ = float(max(MAD_TO_SD * np.median(mad), SPREAD_FLOOR))
        inputs, last = masked(windows, self.spread_)
        targets = inputs.copy()
        targets[:, -1] = last
        x, y = self._shaped(inputs), self._shaped(targets)
        order = np.random.default_rng(self.seed).permutation(len(x))
        n_val = max(1, len(x) // 10)
        val, train = order[:n_val], order[n_val:]
        stop = k.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        with progress.task(f"  {self.name} epochs", total=self.epochs, unit="epochs") as epochs:
            model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=self.epochs,
                      batch_size=self.batch_size, shuffle=True, verbose=0, callbacks=[stop, *epochs.keras_callbacks(k)])
        self.model_ = model
        self.graph_ = to_onnx(model, self.window)
        self._keras_file = None
        self._session = None
        return self

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        """Return the ONNX graph's ``(n, window)`` float64 output for :func:`masked` inputs."""
        require_fitted(self, "graph_")
        if self._session is None:
            self._session = session(self.graph_)
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if len(x) <= SCORE_BATCH:
            return self._session.run(None, {"windows": x})[0].astype(np.float64)
        out = [self._session.run(None, {"windows": x[i:i + SCORE_BATCH]})[0]
               for i in range(0, len(x), SCORE_BATCH)]
        return np.concatenate(out).astype(np.float64)

    def forecast(self, windows: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` the model's forecast of each window's last point from the points before it (scaled units)."""
        windows = check_windows(windows, self.window, self.name)
        require_fitted(self, "graph_")
        inputs, last = masked(windows, self.spread_)
        return windows[:, -1] - last + self._run(inputs)[:, -1]

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` forecast errors of each window's last point (scaled units): see the class docstring."""
        windows = check_windows(windows, self.window, self.name)
        check_phase(phase, len(windows), self.period, self.name)
        require_fitted(self, "graph_")
        inputs, last = masked(windows, self.spread_)
        naive = np.median(windows[:, -NAIVE - 1:-1], axis=1)
        return _evidence(windows[:, -1], last - self._run(inputs)[:, -1], naive)

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the scores of every full window of consecutive ``values`` (see ``base.score_consecutive``)."""
        values = check_series(values, self.window, self.name)
        check_phase(phase, len(values), self.period, self.name)
        require_fitted(self, "graph_")
        median, mad = rolling_median_mad(values[:-1], self.window - 1)  # the past of each window
        naive = rolling_median(values[self.window - NAIVE - 1:-1], NAIVE)
        windows = sliding(values, self.window)
        out = np.empty(len(windows))
        for i in range(0, len(windows), SCORE_BATCH):  # chunks: (n, window) temporaries stay small
            part = slice(i, i + SCORE_BATCH)
            inputs, last = masked(windows[part], self.spread_, median[part], mad[part])
            out[part] = _evidence(windows[part, -1], last - self._run(inputs)[:, -1], naive[part])
        return out

    def save(self, directory: Path) -> None:
        require_fitted(self, "graph_")
        directory = Path(directory)
        write_params(directory, self.name, {"window": self.window, "period": self.period,
                                            "seed": self.seed, **self._params()})
        (directory / "model.onnx").write_bytes(self.graph_)
        np.savez(directory / "state.npz", spread=np.array(self.spread_))
        if self.model_ is not None:
            self.model_.save(directory / "model.keras")
        elif self._keras_file is not None:
            (directory / "model.keras").write_bytes(self._keras_file)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a saved detector: the ONNX graph for scoring, the Keras file kept as bytes."""
        directory = Path(directory)
        detector = cls(**read_params(directory, cls.name))
        keras_file = directory / "model.keras"
        detector._keras_file = keras_file.read_bytes() if keras_file.is_file() else None
        state = directory / "state.npz"
        if not state.is_file():
            raise ValueError(f"{directory}: saved by an older version whose autoencoders scored whole windows; "
                             "train new models (python train.py)")
        with np.load(state) as arrays:
            detector.spread_ = float(arrays["spread"])
        detector.graph_ = (directory / "model.onnx").read_bytes()
        return detector
