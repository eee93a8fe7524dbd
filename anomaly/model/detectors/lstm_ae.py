"""LSTM autoencoder: the window read by one LSTM into a state, rebuilt by another."""

from __future__ import annotations

import numpy as np

from .autoencoder import KerasAutoencoder


class LSTMAutoencoder(KerasAutoencoder):
    """Sequence autoencoder ``LSTM encoder -> repeat -> LSTM decoder -> per-step dense``."""

    name = "lstm_ae"

    def __init__(self, window: int = 32, period: int = 0, units: int = 24, epochs: int = 8,
                 batch_size: int = 128, learning_rate: float = 3e-3, seed: int = 0):
        super().__init__(window, period, seed)
        self.units = units
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate

    def _shaped(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)[:, :, None]  # (n, window, 1 feature)

    def _build(self, keras):
        layers = keras.layers
        return keras.Sequential([
            keras.Input((self.window, 1)),
            layers.LSTM(self.units),
            layers.RepeatVector(self.window),
            layers.LSTM(self.units, return_sequences=True),
            layers.TimeDistributed(layers.Dense(1)),
        ])

    def _params(self) -> dict:
        return {"units": self.units, "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate}
