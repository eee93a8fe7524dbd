"""What flows through a stream: input chunks, rejected lines, and decisions (one or a block).

Replay moves columns, not objects: a :class:`Chunk` holds the points read together as
arrays, and a :class:`DecisionBlock` holds their verdicts as arrays. Per-point objects
(:class:`Decision`) are made only where one point at a time is the natural unit: an
anomaly message, the live plot, the one-point API ``Runner.step``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..simulate import Point


@dataclass(frozen=True)
class Decision:
    """The verdict on one point. ``status`` is ``ok`` or ``warm-up`` (buffers not yet full)."""

    timestamp: float  # epoch seconds
    value: float
    score: float  # in [0, 1); 0.5 is the alarm threshold
    p_value: float
    is_anomaly: bool
    p_detectors: dict[str, float]
    status: str = "ok"
    expected: float = math.nan
    spread: float = math.nan
    label: bool | None = None
    kind: str = ""
    alpha: float = 1e-3  # the alarm threshold the decision was made with
    series: str | None = None  # the series it belongs to (None: the stream's only one)

    @property
    def fired(self) -> list[str]:
        """Detectors whose own p-value is below the alarm threshold, strongest first."""
        return [name for name, p in sorted(self.p_detectors.items(), key=lambda kv: kv[1])
                if p < self.alpha]


@dataclass(frozen=True)
class Rejected:
    """A point that could not be scored, and why; it goes to quarantine, not to the void."""

    raw: str
    reason: str
    position: int  # 1-based position in the input (line number for text sources)
    series: str | None = None  # the series it claimed to belong to, when that was read


@dataclass
class Chunk:
    """Consecutive input points read together, as columns of equal length ``n``."""

    timestamps: np.ndarray  # (n,) float64 epoch seconds
    values: np.ndarray  # (n,) float64
    positions: np.ndarray  # (n,) int64, 1-based input position of each point
    raw: Sequence[str] | None = None  # each point's input text, for quarantine records
    labels: Sequence[bool | None] | None = None  # the truth, when the source knows it
    kinds: Sequence[str] | None = None
    rejected: list[Rejected] = field(default_factory=list)  # lines of this chunk that did not parse
    filled: np.ndarray | None = None  # (n,) bool: made up to fill a gap (see anomaly.online.gaps), not input
    series: Sequence[str] | None = None  # each point's series key (None: one series; see anomaly.online.keyed)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_points(cls, points: Sequence[Point], positions: Sequence[int] | None = None) -> Chunk:
        """Return the chunk of ``points`` (positions default to 1..n)."""
        n = len(points)
        labels = [p.label for p in points]
        keyed = any(p.series is not None for p in points)
        return cls(np.fromiter((p.timestamp for p in points), np.float64, n),
                   np.fromiter((p.value for p in points), np.float64, n),
                   np.arange(1, n + 1) if positions is None else np.asarray(positions, dtype=np.int64),
                   labels=labels if any(label is not None for label in labels) else None,
                   kinds=[p.kind for p in points], series=[p.series or "" for p in points] if keyed else None)

    @classmethod
    def concat(cls, chunks: Sequence[Chunk]) -> Chunk:
        """Return one chunk holding ``chunks`` in order (unknown labels become ``None``)."""

        def joined(column: str, missing):
            if all(getattr(c, column) is None for c in chunks):
                return None
            return [v for c in chunks for v in (getattr(c, column) or [missing] * len(c))]

        raw = ([c.raw_text(i) for c in chunks for i in range(len(c))]
               if any(c.raw is not None for c in chunks) else None)
        filled = (np.concatenate([c.filled if c.filled is not None else np.zeros(len(c), dtype=bool) for c in chunks])
                  if any(c.filled is not None for c in chunks) else None)
        return cls(np.concatenate([c.timestamps for c in chunks]), np.concatenate([c.values for c in chunks]),
                   np.concatenate([c.positions for c in chunks]), raw, joined("labels", None),
                   joined("kinds", ""), [r for c in chunks for r in c.rejected], filled, joined("series", ""))

    def raw_text(self, i: int) -> str:
        """Return point ``i`` as the input had it (or as ``timestamp,value`` when unknown)."""
        return self.raw[i] if self.raw is not None else f"{self.timestamps[i]},{self.values[i]}"

    def part(self, start: int, stop: int) -> Chunk:
        """Return points ``start..stop-1`` (without ``rejected``)."""
        def cut(column):
            return None if column is None else column[start:stop]

        return Chunk(self.timestamps[start:stop], self.values[start:stop], self.positions[start:stop],
                     cut(self.raw), cut(self.labels), cut(self.kinds), filled=cut(self.filled), series=cut(self.series))

    def by_series(self) -> dict[str, Chunk]:
        """Return the points of each series (``""`` without a ``series`` column), in order of first appearance.

        One pass over the keys: a tick of thousands of series must not compare every key with every point."""
        if self.series is None:
            return {"": self}
        return {key: self.take(np.array(rows)) for key, rows in self.rows_by_series().items()}

    def rows_by_series(self) -> dict[str, list[int]]:
        """Return the rows of each series, in order of first appearance (one pass; all rows under ``""``
        without a ``series`` column)."""
        return {key: [rows] if type(rows) is int else rows for key, rows in self.series_rows().items()}

    def series_rows(self) -> dict[str, int | list[int]]:
        """Like :meth:`rows_by_series`, a series of one row given as that row (an ``int``, not a list): a tick of
        thousands of series, one point each, then makes no list per series."""
        if self.series is None:
            return {"": list(range(len(self)))}
        index: dict[str, int | list[int]] = {}
        for i, key in enumerate(self.series):
            rows = index.get(key)
            if rows is None:
                index[key] = i
            elif type(rows) is int:
                index[key] = [rows, i]
            else:
                rows.append(i)
        return index

    def take(self, keep: np.ndarray) -> Chunk:
        """Return the points where the boolean mask ``keep`` is true, or at the integer positions ``keep``
        (without ``rejected``)."""
        keep = np.asarray(keep)
        index = np.flatnonzero(keep) if keep.dtype == bool else keep

        def pick(column):
            return None if column is None else [column[i] for i in index]

        return Chunk(self.timestamps[index], self.values[index], self.positions[index],
                     pick(self.raw), pick(self.labels), pick(self.kinds),
                     filled=None if self.filled is None else self.filled[index], series=pick(self.series))


@dataclass
class DecisionBlock:
    """Verdicts on consecutive points, as columns of equal length ``n`` (see :class:`Decision`)."""

    names: list[str]  # detector names, the columns of ``p_detectors``
    alpha: float  # alarm threshold on ``p_value``
    timestamps: np.ndarray  # (n,) epoch seconds
    values: np.ndarray  # (n,) the series' units
    score: np.ndarray  # (n,) in [0, 1), 0.5 at the threshold
    p_value: np.ndarray  # (n,)
    is_anomaly: np.ndarray  # (n,) bool
    p_detectors: np.ndarray  # (n, k)
    warmup: np.ndarray  # (n,) bool: not scored yet, history too short
    expected: np.ndarray  # (n,) the series' units, NaN in warm-up
    spread: np.ndarray  # (n,) one standard deviation around ``expected``
    positions: np.ndarray  # (n,) int64 input positions
    labels: Sequence[bool | None] | None = None
    kinds: Sequence[str] | None = None
    filled: np.ndarray | None = None  # (n,) bool: made up to fill a gap; never flagged
    raw: np.ndarray | None = None  # (n, k) raw detector scores (NaN where not scored), for adaptation
    series: str | Sequence[str] | None = None  # the series of every point, or of each (None: the stream's only one)
    # (n,) bool: the p-value is a record's, beyond every value seen (anomaly.model.novelty), not the ensemble's
    record: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def status(self) -> list[str]:
        """Return each point's status: ``ok``, ``warm-up`` or ``filled``."""
        filled = self.filled if self.filled is not None else np.zeros(len(self), dtype=bool)
        return ["filled" if f else "warm-up" if w else "ok" for f, w in zip(filled.tolist(), self.warmup.tolist())]

    @classmethod
    def concat(cls, blocks: Sequence[DecisionBlock]) -> DecisionBlock:
        """Return one block holding ``blocks`` (of the same ensemble) in order."""
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]

        def joined(column: str, missing):
            if all(getattr(b, column) is None for b in blocks):
                return None
            return [v for b in blocks for v in (getattr(b, column) if getattr(b, column) is not None
                                                 else [missing] * len(b))]

        arrays = {name: np.concatenate([getattr(b, name) for b in blocks])
                  for name in ("timestamps", "values", "score", "p_value", "is_anomaly", "p_detectors",
                               "warmup", "expected", "spread", "positions")}
        filled, record = joined("filled", False), joined("record", False)
        raw = (np.concatenate([b.raw if b.raw is not None else np.full((len(b), len(first.names)), np.nan)
                               for b in blocks]) if any(b.raw is not None for b in blocks) else None)
        return cls(first.names, first.alpha, labels=joined("labels", None), kinds=joined("kinds", ""),
                   filled=None if filled is None else np.array(filled, dtype=bool), raw=raw, series=first.series,
                   record=None if record is None else np.array(record, dtype=bool), **arrays)

    def take(self, index: np.ndarray) -> DecisionBlock:
        """Return the points at ``index`` (integer positions into this block), in that order."""
        def pick(column):
            return None if column is None else [column[i] for i in index]

        arrays = {name: getattr(self, name)[index] for name in ("timestamps", "values", "score", "p_value", "is_anomaly",
                                                                 "p_detectors", "warmup", "expected", "spread",
                                                                 "positions")}
        series = self.series if self.series is None or isinstance(self.series, str) else pick(self.series)
        return DecisionBlock(self.names, self.alpha, labels=pick(self.labels), kinds=pick(self.kinds),
                             filled=None if self.filled is None else self.filled[index],
                             raw=None if self.raw is None else self.raw[index], series=series,
                             record=None if self.record is None else self.record[index], **arrays)

    def decision(self, i: int) -> Decision:
        """Return point ``i`` as a :class:`Decision`."""
        label = self.labels[i] if self.labels is not None else None
        return Decision(float(self.timestamps[i]), float(self.values[i]), float(self.score[i]),
                        float(self.p_value[i]), bool(self.is_anomaly[i]),
                        dict(zip(self.names, self.p_detectors[i].tolist())),
                        "filled" if self.filled is not None and self.filled[i] else
                        "warm-up" if self.warmup[i] else "ok", float(self.expected[i]),
                        float(self.spread[i]), label, self.kinds[i] if self.kinds is not None else "",
                        self.alpha, self.series if self.series is None or isinstance(self.series, str)
                        else self.series[i])

    def decisions(self, start: int = 0) -> list[Decision]:
        """Return the decisions of points ``start..n-1``."""
        return [self.decision(i) for i in range(start, len(self))]

    def anomalies(self) -> list[Decision]:
        """Return the decisions of the flagged points only."""
        return [self.decision(int(i)) for i in np.flatnonzero(self.is_anomaly)]
