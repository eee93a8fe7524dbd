"""Dense autoencoder: a window squeezed through a small bottleneck and rebuilt."""

from __future__ import annotations

from .autoencoder import KerasAutoencoder


class DenseAutoencoder(KerasAutoencoder):
    """Fully connected autoencoder ``window -> hidden -> bottleneck -> hidden -> window``."""

    name = "dense_ae"

    def __init__(self, window: int = 32, period: int = 0, hidden: int = 32, bottleneck: int = 6,
                 epochs: int = 12, batch_size: int = 128, learning_rate: float = 2e-3, seed: int = 0):
        super().__init__(window, period, seed)
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate

    def _build(self, keras):
        layers = keras.layers
        return keras.Sequential([
            keras.Input((self.window,)),
            layers.Dense(self.hidden, activation="relu"),
            layers.Dense(self.bottleneck),
            layers.Dense(self.hidden, activation="relu"),
            layers.Dense(self.window),
        ])

    def _params(self) -> dict:
        return {"hidden": self.hidden, "bottleneck": self.bottleneck, "epochs": self.epochs,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate}
