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

from ..rolling import rolling_median
from ..windows import sliding
from .base import (check_phase, check_series, check_windows, read_params, require_fitted,
                   write_params)
from .onnx_export import session, to_onnx

SCORE_BATCH = 1024  # windows per ONNX Runtime call: the fastest size measured here
LAST_POINTS = 2  # the score looks at the window's end, where the scored point is


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


def centred(windows: np.ndarray) -> np.ndarray:
    """Return windows minus their own median: the models learn shapes, not levels.

    A slow trend or a lasting change of level would otherwise look anomalous forever;
    the start of a level shift still shows as a step inside the window.
    """
    return windows - np.median(windows, axis=1, keepdims=True)


class KerasAutoencoder:
    """Base class: subclasses set ``name`` and implement ``_build(keras)`` and ``_params()``.

    The model reconstructs the median-centred window. The score is the root of an equal
    mix of two mean squared errors: over the last ``LAST_POINTS`` values (weighted toward
    the very last: the scored point) and over the whole window (so that a pattern which
    builds up, such as a level shift or a change of shape, keeps scoring while it lasts).
    Measured on simulated streams, the window term lifts point-wise ROC AUC from about 0.52
    to 0.57-0.63; its cost is that points right after an anomaly score higher too.

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
        self.graph_: bytes | None = None
        self._keras_file: bytes | None = None
        self._session = None

    def _build(self, keras):
        raise NotImplementedError

    def _params(self) -> dict:
        raise NotImplementedError

    def _inputs(self, windows: np.ndarray) -> np.ndarray:
        return centred(windows).astype(np.float32)

    def fit(self, windows: np.ndarray, phase: np.ndarray | None = None) -> Self:
        """Train on normal windows (10% held back for early stopping); return ``self``."""
        windows = check_windows(windows, self.window, self.name, min_rows=10)
        check_phase(phase, len(windows), self.period, self.name)
        k = keras()
        k.utils.set_random_seed(self.seed)
        model = self._build(k)
        model.compile(optimizer=k.optimizers.Adam(self.learning_rate), loss="mse")
        x = self._inputs(windows)
        order = np.random.default_rng(self.seed).permutation(len(x))
        n_val = max(1, len(x) // 10)
        val, train = x[order[:n_val]], x[order[n_val:]]
        stop = k.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        model.fit(train, train, validation_data=(val, val), epochs=self.epochs,
                  batch_size=self.batch_size, shuffle=True, verbose=0, callbacks=[stop])
        self.model_ = model
        self.graph_ = to_onnx(model, self.window)
        self._keras_file = None
        self._session = None
        return self

    def _reconstruct_centred(self, centred_windows: np.ndarray) -> np.ndarray:
        """Return the model's ``(n, window)`` float64 output for median-centred windows."""
        require_fitted(self, "graph_")
        if self._session is None:
            self._session = session(self.graph_)
        x = np.ascontiguousarray(centred_windows, dtype=np.float32)
        if len(x) <= SCORE_BATCH:
            return self._session.run(None, {"windows": x})[0].astype(np.float64)
        out = [self._session.run(None, {"windows": x[i:i + SCORE_BATCH]})[0]
               for i in range(0, len(x), SCORE_BATCH)]
        return np.concatenate(out).astype(np.float64)

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """Return the ``(n, window)`` reconstruction of each median-centred window (scaled units)."""
        windows = check_windows(windows, self.window, self.name)
        return self._reconstruct_centred(centred(windows))

    def _errors(self, centred_windows: np.ndarray) -> np.ndarray:
        squared = (centred_windows - self._reconstruct_centred(centred_windows)) ** 2
        weights = np.arange(1, LAST_POINTS + 1, dtype=np.float64)
        last = (squared[:, -LAST_POINTS:] * weights).sum(axis=1) / weights.sum()
        return np.sqrt(0.5 * last + 0.5 * squared.mean(axis=1))

    def score(self, windows: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return ``(n,)`` reconstruction errors of the window's end (scaled units)."""
        windows = check_windows(windows, self.window, self.name)
        check_phase(phase, len(windows), self.period, self.name)
        return self._errors(centred(windows))

    def score_series(self, values: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Return the scores of every full window of consecutive ``values`` (see ``base.score_consecutive``)."""
        values = check_series(values, self.window, self.name)
        check_phase(phase, len(values), self.period, self.name)
        median = rolling_median(values, self.window)
        windows = sliding(values, self.window)
        out = np.empty(len(median))
        for i in range(0, len(median), SCORE_BATCH):  # chunks: (n, window) temporaries stay small
            part = slice(i, i + SCORE_BATCH)
            out[part] = self._errors(windows[part] - median[part, None])
        return out

    def save(self, directory: Path) -> None:
        require_fitted(self, "graph_")
        directory = Path(directory)
        write_params(directory, self.name, {"window": self.window, "period": self.period,
                                            "seed": self.seed, **self._params()})
        (directory / "model.onnx").write_bytes(self.graph_)
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
        graph = directory / "model.onnx"
        if graph.is_file():
            detector.graph_ = graph.read_bytes()
        else:  # a run saved before the ONNX graph was stored: export it now (imports TensorFlow)
            detector.graph_ = to_onnx(keras().models.load_model(keras_file, compile=False), detector.window)
        return detector
