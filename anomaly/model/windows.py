"""Sliding windows, robust scaling and the regular time grid: the only place windows are built."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .warp import Warp


def sliding(values: np.ndarray, size: int) -> np.ndarray:
    """Return the read-only ``(len(values) - size + 1, size)`` windows of a 1-D array.

    Row ``i`` ends at ``values[i + size - 1]``: a window belongs to its last point. This is
    a strided view (no copy); detectors must not write into it.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    if size < 1 or len(values) < size:
        raise ValueError(f"need at least size={size} values for one window, got {len(values)}")
    if len(values) == size:  # one window (a live point): the same view without sliding_window_view's 70 us
        view = values[None, :]
        view.flags.writeable = False
        return view
    return sliding_window_view(values, size)


@dataclass(frozen=True)
class Scaler:
    """Robust affine scaling of the warped values: ``(warp(x) - center) / scale`` with their median and IQR.

    The median and IQR are barely moved by the anomalies a user's history may contain,
    unlike the mean and standard deviation. ``warp`` and ``offset``: the variance-stabilising
    transform chosen from the history (:mod:`anomaly.model.warp`; ``none``: the values as they are).
    """

    center: float
    scale: float
    warp: str = "none"
    offset: float = 0.0

    @classmethod
    def fit(cls, values: np.ndarray, warp: Warp | None = None) -> Scaler:
        """Return the scaler for ``values`` (1-D, finite) warped by ``warp`` (``None``: none); a constant series
        gets scale 1."""
        warp = warp or Warp()
        values = warp.forward(values)
        q25, q50, q75 = np.percentile(values, [25, 50, 75])
        scale = (q75 - q25) / 1.349  # IQR of a normal distribution is 1.349 sd
        if not np.isfinite(scale) or scale <= 1e-12 * max(1.0, abs(q50)):
            scale = float(np.std(values)) or 1.0
        return cls(float(q50), float(scale), warp.kind, warp.offset)

    @property
    def warping(self) -> Warp:
        """The warp, as an object."""
        return Warp(self.warp, self.offset)

    def warped(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` warped, before the affine scaling (the values themselves without a warp)."""
        if self.warp == "none":
            return np.asarray(values, dtype=np.float64)
        return self.warping.forward(values)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Return scaled values (unitless)."""
        return (self.warped(values) - self.center) / self.scale

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """Return values in the series' own units."""
        affine = np.asarray(scaled) * self.scale + self.center
        return affine if self.warp == "none" else self.warping.inverse(affine)

    def spread(self, expected: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Return a spread in scaled units around ``expected`` (the series' units) in the series' units."""
        spread = np.asarray(spread) * self.scale
        return spread if self.warp == "none" else spread / self.warping.slope(expected)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimeGrid:
    """A regular sampling grid: point positions are whole intervals since ``origin``.

    Positions give each point its seasonal phase (``position % period``), so phases agree
    between the training history and a live stream that starts later.

    ``sequence``: the series is too irregular for a grid (training found too many holes).
    Points are then taken in the order their timestamps give, one after the other, with
    no gap filling; their positions give them their phase and nothing else.
    """

    origin: float  # epoch seconds of position 0
    interval: float  # seconds between points
    sequence: bool = False

    @classmethod
    def infer(cls, timestamps: np.ndarray) -> TimeGrid:
        """Return the grid of ``timestamps`` (epoch seconds, increasing): median step."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        steps = np.diff(timestamps)
        interval = float(np.median(steps)) if len(steps) else 1.0
        if not interval > 0:
            raise ValueError("timestamps must increase: the median step is not positive")
        return cls(float(timestamps[0]), interval)

    def as_sequence(self) -> TimeGrid:
        """Return this grid in sequence mode (see the class docstring)."""
        return TimeGrid(self.origin, self.interval, sequence=True)

    def positions(self, timestamps: np.ndarray) -> np.ndarray:
        """Return the int64 grid position of each timestamp (nearest interval)."""
        return np.rint((np.asarray(timestamps, dtype=np.float64) - self.origin) / self.interval).astype(np.int64)

    def position(self, timestamp: float) -> int:
        """Return one timestamp's grid position, as :meth:`positions` (nearest interval, half to even), in
        plain Python: a tick of many series places each series' point this way."""
        return round((timestamp - self.origin) / self.interval)

    def timestamp(self, position: int | np.ndarray) -> np.ndarray:
        """Return epoch seconds of grid ``position``."""
        return self.origin + np.asarray(position, dtype=np.float64) * self.interval

    def to_dict(self) -> dict:
        return asdict(self)


def phases(positions: np.ndarray, period: int) -> np.ndarray | None:
    """Return ``positions % period`` as int64, or ``None`` when there is no period (``period < 2``)."""
    if period < 2:
        return None
    return np.mod(np.asarray(positions, dtype=np.int64), period)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` index ranges of the runs of True in a boolean ``(n,)`` array."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))
