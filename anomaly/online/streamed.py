"""A whole stream's decisions as arrays: a series or a file streamed through a :class:`~anomaly.online.runner.Runner`.

The same runner as ``stream.py``, chunk by chunk, with adaptation and refits when asked;
used by the evaluation, the drift recovery, the refits' own checks and the notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ENSEMBLE", "Streamed", "stream_file", "stream_series"]
ENSEMBLE = "ensemble"  # the name of the ensemble's own decisions, beside the detectors' names


@dataclass
class Streamed:
    """A whole stream's decisions as arrays (accepted points only, in order)."""

    names: list[str]  # detector names, the columns of p_detectors
    alpha: float
    timestamps: np.ndarray  # (n,) epoch seconds
    values: np.ndarray
    score: np.ndarray  # (n,) the ensemble's score in [0, 1), 0.5 at the threshold
    p_detectors: np.ndarray  # (n, k)
    flags: np.ndarray  # (n,) bool: the ensemble's decisions
    rejected: int = 0  # input lines that went to quarantine

    def flags_of(self, name: str) -> np.ndarray:
        """Return ``(n,)`` flags of the ensemble (``"ensemble"``) or of one detector alone."""
        if name == ENSEMBLE:
            return self.flags
        return self.p_detectors[:, self.names.index(name)] < self.alpha


def stream_file(ensemble, path: str | Path, time_column: str = "timestamp", value_column: str = "value",
                adapt=None, chunk: int = 1000, refitter=None) -> Streamed:
    """Stream a CSV through a :class:`~anomaly.online.runner.Runner` as ``stream.py`` does; return the decisions.

    ``adapt``: an :class:`~anomaly.config.AdaptConfig` (``None``: no adaptation). Points are
    read ``chunk`` lines at a time: adaptation acts between chunks, as it does live.
    ``refitter``: a :class:`~anomaly.online.refit.Refitter` (``None``: the models are never retrained).
    """
    from ..io.sources import csv_chunks

    return _streamed(ensemble, csv_chunks(path, time_column, value_column, chunk_bytes=chunk * 32), adapt, refitter)


def stream_series(ensemble, timestamps: np.ndarray, values: np.ndarray, chunk: int = 1000, adapt=None,
                  refitter=None) -> Streamed:
    """Stream arrays (epoch seconds, values) through a runner, ``chunk`` points at a time; return the decisions.

    ``adapt`` and ``refitter``: as for :func:`stream_file`."""
    from ..io.records import Chunk

    n = len(values)
    return _streamed(ensemble, (Chunk(timestamps[i:i + chunk], values[i:i + chunk], np.arange(i, min(i + chunk, n)) + 1)
                                for i in range(0, n, chunk)), adapt, refitter, total=n)


def _streamed(ensemble, chunks, adapt=None, refitter=None, total: int | None = None) -> Streamed:
    from .. import progress
    from .runner import Runner

    runner = Runner(ensemble, adapt=adapt, refitter=refitter)
    blocks = []
    try:
        with progress.task("scoring", total, unit="points") as bar:
            for chunk in chunks:
                block = runner.process(chunk)[0]
                bar.count(len(chunk) + len(chunk.rejected))
                if len(block):
                    blocks.append(block)
    finally:
        runner.close()

    def joined(column: str) -> np.ndarray:
        return np.concatenate([getattr(b, column) for b in blocks]) if blocks else np.empty(0)

    p = np.concatenate([b.p_detectors for b in blocks]) if blocks else np.empty((0, len(ensemble.names)))
    return Streamed(ensemble.names, ensemble.alpha, joined("timestamps"), joined("values"), joined("score"), p,
                    joined("is_anomaly").astype(bool), runner.counts.rejected)
