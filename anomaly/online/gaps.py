"""Missing points in a stream: fill and flag them, or quarantine the point after the gap.

A point's place on the sampling grid comes from its timestamp. When consecutive accepted
points are more than one grid step apart, points are missing. The detectors' windows
assume consecutive points, so a gap is handled one of two ways:

- ``fill`` (the default): the missing points are interpolated linearly between the points
  on either side of the gap, and written with status ``filled``; they are never flagged.
  The decision for the point after the gap uses it and earlier points only, so this stays
  causal. A gap longer than ``max_fill`` points is not filled: the stream restarts its
  warm-up there, as after a reconnect.
- ``quarantine``: the point after the gap goes to quarantine (reason ``gap``), and the
  stream restarts its warm-up at the next point.

A series trained in sequence mode (too irregular for a grid, see
:class:`~anomaly.model.windows.TimeGrid`) has no gaps: its points follow one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.records import Chunk, Rejected
from ..model.windows import TimeGrid

MODES = ("fill", "quarantine")


@dataclass
class Piece:
    """Consecutive points to score; ``restart`` means: forget the history before them."""

    chunk: Chunk
    restart: bool = False


class GapHandler:
    """Tracks the last accepted point across chunks and cuts each chunk into :class:`Piece` objects."""

    def __init__(self, grid: TimeGrid, mode: str = "fill", max_fill: int = 0):
        if mode not in MODES:
            raise ValueError(f"gaps must be one of {MODES}, got {mode!r}")
        self.grid = grid
        self.mode = mode
        self.max_fill = max_fill
        self._last: tuple[int, float] | None = None  # grid position and value of the last accepted point
        self._restart = False  # a restart still owed to the next points (the gap ended a chunk)

    def state(self) -> tuple[dict, dict]:
        """Return ``(arrays, meta)``: what :meth:`load_state` needs to go on (see :mod:`anomaly.online.state`)."""
        return {}, {"last": list(self._last) if self._last is not None else None, "restart": self._restart}

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Go on from :meth:`state`'s output."""
        last = meta["last"]
        self._last = (int(last[0]), float(last[1])) if last is not None else None
        self._restart = bool(meta["restart"])

    def split(self, chunk: Chunk) -> tuple[list[Piece], list[Rejected]]:
        """Return the pieces of ``chunk`` (valid points, in order) and the points quarantined for a gap."""
        if len(chunk) == 0:
            return [], []
        if self.grid.sequence:  # points follow one another whatever their timestamps: no gaps
            return [Piece(chunk)], []
        positions = self.grid.positions(chunk.timestamps)
        last = self._last
        before = np.r_[positions[0] - 1 if last is None else last[0], positions[:-1]]
        value_before = np.r_[np.nan if last is None else last[1], chunk.values[:-1]]
        missing = positions - before - 1
        gaps = np.flatnonzero(missing > 0)
        self._last = int(positions[-1]), float(chunk.values[-1])
        if len(gaps) == 0:  # the common case
            restart, self._restart = self._restart, False
            return [Piece(chunk, restart)], []
        pieces, rejected, start, restart = [], [], 0, self._restart
        for i in gaps:
            if i > start:
                pieces.append(Piece(chunk.part(start, i), restart))
                restart = False
            count = int(missing[i])
            if self.mode == "quarantine":
                rejected.append(Rejected(chunk.raw_text(i), f"gap: {count} missing points before this one",
                                         int(chunk.positions[i])))
                start, restart = i + 1, True
                continue
            if count > self.max_fill:
                start, restart = i, True
                continue
            pieces.append(Piece(_filled(self.grid, int(before[i]), value_before[i], count, chunk, i), restart))
            start, restart = i, False
        if start < len(chunk):
            pieces.append(Piece(chunk.part(start, len(chunk)), restart))
            restart = False
        self._restart = restart  # still owed when the chunk ended with a quarantined gap point
        return pieces, rejected


def _filled(grid: TimeGrid, last_position: int, last_value: float, count: int, chunk: Chunk, i: int) -> Chunk:
    """Return ``count`` points on the grid between the last accepted point and point ``i`` of ``chunk``."""
    steps = np.arange(1, count + 1)
    values = last_value + (chunk.values[i] - last_value) * steps / (count + 1)
    return Chunk(grid.timestamp(last_position + steps), values, np.full(count, chunk.positions[i]),
                 [""] * count, None, None, filled=np.ones(count, dtype=bool))
