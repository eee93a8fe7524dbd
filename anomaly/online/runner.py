"""The online loop: one decision per arriving point, exactly causal.

A :class:`Runner` keeps the last ``window - 1`` scaled points. :meth:`Runner.process`
validates and scores a :class:`~anomaly.io.records.Chunk` of queued points in one vectorised
pass (each point still sees only itself and earlier points): replay moves blocks of
thousands, a live stream chunks of one. ``step`` and ``step_many`` are the same for
:class:`~anomaly.simulate.Point` objects. Invalid points are rejected with a reason, never
silently dropped: the caller sends them to the quarantine sink.
"""

from __future__ import annotations

import copy
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..config import AdaptConfig
from ..io.records import Chunk, Decision, DecisionBlock, Rejected
from ..model.ensemble import Ensemble
from ..model.novelty import record_p_values, take_records
from ..simulate import Point
from .adapt import Adapter
from .gaps import GapHandler
from .lane import DEFER_MAX, OFFSET_SPAN

__all__ = ["Counts", "Decision", "DecisionBlock", "Rejected", "Runner"]

COMBINED = "combined"  # the combined evidence's calibrator in a snapshot (no detector has this name)
JUMP_CONFIRM = 3  # points in a row beyond the horizon, in order and close together: the clock really moved


@dataclass
class Counts:
    points: int = 0  # input points scored or in warm-up (filled points not included)
    anomalies: int = 0
    warmup: int = 0
    rejected: int = 0
    filled: int = 0  # points made up to fill gaps
    restarts: int = 0  # gaps too long to fill: the warm-up started again
    by_reason: dict[str, int] = field(default_factory=dict)

    def plus(self, other: Counts) -> Counts:
        """Return these counts and ``other``'s added up (a new object)."""
        numbers = {key: value + getattr(other, key) for key, value in vars(self).items() if key != "by_reason"}
        reasons = dict(self.by_reason)
        for reason, n in other.by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
        return Counts(**numbers, by_reason=reasons)

    def add_reject(self, reason: str) -> None:
        """Count one rejected input line, under the kind of ``reason`` (its text before any ``:``; the rest
        names the line's own value, and a summary of a file of bad lines would otherwise list every one)."""
        self.rejected += 1
        kind = reason.split(":", 1)[0]
        self.by_reason[kind] = self.by_reason.get(kind, 0) + 1

    def since(self, earlier: Counts) -> Counts:
        """Return the counts added after ``earlier`` (a copy of these counts taken before)."""
        numbers = {key: value - getattr(earlier, key) for key, value in vars(self).items() if key != "by_reason"}
        reasons = {key: n - earlier.by_reason.get(key, 0) for key, n in self.by_reason.items()}
        return Counts(**numbers, by_reason={key: n for key, n in reasons.items() if n})


class Runner:
    """Scores a stream point by point (or block by block) with a trained :class:`Ensemble`."""

    future_horizon: float | None = None  # (class defaults: validation alone needs no ensemble)
    _land: Callable[[], None] | None = None  # while a lane holds this series' hot state: takes it back

    def __init__(self, ensemble: Ensemble, gaps: str = "fill", max_fill: int = 0,
                 adapt: AdaptConfig | None = None, refitter=None, future_horizon: float | None = None,
                 wall_clock: Callable[[], float] = time.time):
        """``gaps``: ``fill`` or ``quarantine`` (see :mod:`anomaly.online.gaps`); ``max_fill`` 0 means the longest window.

        ``adapt``: how to adapt to drift (:mod:`anomaly.online.adapt`); ``None`` keeps the ensemble as trained.
        ``refitter``: a :class:`~anomaly.online.refit.Refitter` that retrains the models when the adapter
        asks (``None``: the models stay; calibration still adapts).
        ``future_horizon``: seconds; a timestamp further than this past both the stream's last
        point and ``wall_clock()`` is rejected as in the future (``None``: no such check, for
        sources with a clock of their own such as the simulator).
        """
        self.ensemble = ensemble
        self.adapter = Adapter(ensemble, adapt) if adapt is not None and adapt.enabled else None
        self.refitter = refitter if self.adapter is not None else None
        self._keep = ensemble.window - 1
        self._scaled = np.empty(0)
        self._positions = np.empty(0, dtype=np.int64)
        self._last_timestamp = -math.inf
        self._gaps = GapHandler(ensemble.grid, gaps, max_fill or ensemble.window)
        self._land = None
        self.counts = Counts()
        self.future_horizon = future_horizon
        self._wall_clock = wall_clock
        self._ahead: list[float] = []  # the latest points beyond the horizon, in a row (see _in_the_future)
        self._deferred = array("d")  # scored points the adapter has yet to see (see flush)
        self._boundary = 0  # the input count at which the adapter next acts, as last worked out (ticks)
        # the range of every value seen, training history included, and how many (see anomaly.model.novelty)
        self._low, self._high, self._seen, self._step = (getattr(ensemble, "range_", None)
                                                         or (math.inf, -math.inf, 0, math.nan))

    def _take_back(self) -> None:
        """Take this series' hot state back from the lane holding it, if one does (see :mod:`anomaly.online.lane`)."""
        if self._land is not None:
            self._land()

    @property
    def counts(self) -> Counts:
        """What this stream has seen so far (points, anomalies, rejects; see :class:`Counts`)."""
        self._take_back()  # a lane counts the points it takes in: up to date once it gives them back
        return self._counts

    @counts.setter
    def counts(self, counts: Counts) -> None:
        self._counts = counts

    def check(self, point: Point, position: int, now: float | None = None) -> Rejected | None:
        """Return why ``point`` cannot be scored, or ``None`` when it is valid (and remember it).

        A valid point has a finite value and a timestamp after the previous valid one, not
        in the future (see :meth:`_in_the_future`; ``now`` defaults to the wall clock): the
        rules :meth:`process` applies to a whole chunk at once.
        """
        self._take_back()
        reason = self._reason(point.timestamp, point.value, now)
        return None if reason is None else Rejected(f"{point.timestamp},{point.value}", reason, position)

    def _reason(self, timestamp: float, value: float, now: float | None) -> str | None:
        if not math.isfinite(value):
            return "non-finite value"
        if not math.isfinite(timestamp):
            return "non-finite timestamp"
        if timestamp <= self._last_timestamp:
            return "duplicate timestamp" if timestamp == self._last_timestamp else "timestamp out of order"
        if self._in_the_future(timestamp, now):
            return "timestamp in the future"
        self._last_timestamp, self._ahead = timestamp, []
        return None

    def _in_the_future(self, timestamp: float, now: float | None) -> bool:
        """Whether ``timestamp`` (after the last valid one) lies beyond the horizon, and is not a real jump.

        Beyond the horizon means later than both the last valid point and the wall clock by
        more than ``future_horizon``: one line stamped 9999-12-31 would otherwise make every
        later line "out of order". When ``JUMP_CONFIRM`` such points come in a row, in order
        and each within the horizon of the one before, the stream's clock really moved (a
        replay of data stamped after today, a gap of days): the last of them is accepted.
        """
        if self.future_horizon is None:
            return False
        now = self._wall_clock() if now is None else now
        if timestamp <= max(self._last_timestamp, now) + self.future_horizon:
            return False
        ahead = self._ahead
        if ahead and ahead[-1] < timestamp <= ahead[-1] + self.future_horizon:
            ahead.append(timestamp)
        else:
            self._ahead = ahead = [timestamp]
        return len(ahead) < JUMP_CONFIRM

    def _validate(self, timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Vectorised :meth:`check` of a chunk: the mask of valid points and each one's reason or ``None``.

        A point whose value and timestamp are finite is valid when its timestamp exceeds
        every earlier such point's: one rejected for order is at most that maximum, so it
        cannot move it, and the running maximum is the last valid timestamp. A chunk with a
        point beyond the horizon is checked point by point instead (rare: such a point must
        not move the maximum).
        """
        if len(values) == 0:
            return np.zeros(0, dtype=bool), []
        finite_value = np.isfinite(values)
        candidate = finite_value & np.isfinite(timestamps)
        latest = np.maximum.accumulate(np.where(candidate, timestamps, -math.inf))
        before = np.concatenate([[self._last_timestamp], np.maximum(latest[:-1], self._last_timestamp)])
        valid = candidate & (timestamps > before)
        if self.future_horizon is not None:
            now = self._wall_clock()
            if self._ahead or (valid & (timestamps > np.maximum(before, now) + self.future_horizon)).any():
                reasons = [self._reason(t, v, now) for t, v in zip(timestamps.tolist(), values.tolist())]
                return np.array([r is None for r in reasons]), reasons
        if valid.any():
            self._last_timestamp, self._ahead = max(self._last_timestamp, float(latest[-1])), []
        reasons: list[str | None] = [None] * len(values)
        for i in np.flatnonzero(~valid):
            if not finite_value[i]:
                reasons[i] = "non-finite value"
            elif not candidate[i]:
                reasons[i] = "non-finite timestamp"
            else:
                reasons[i] = "duplicate timestamp" if timestamps[i] == before[i] else "timestamp out of order"
        return valid, reasons

    def reject(self, rejected: Rejected) -> Rejected:
        """Count a rejected input; return it for the quarantine sink."""
        self._counts.add_reject(rejected.reason)
        return rejected

    def process(self, chunk: Chunk) -> tuple[DecisionBlock, list[Rejected]]:
        """Validate and score a chunk; return the decisions of its valid points and its rejected lines.

        Every point of the chunk ends in exactly one of the two, and so does every line in
        ``chunk.rejected`` (the lines its source could not parse); all rejects are counted.
        """
        self._take_back()
        rejected = [self.reject(r) for r in chunk.rejected]
        valid, reasons = self._validate(chunk.timestamps, chunk.values)
        for i in np.flatnonzero(~valid):
            rejected.append(self.reject(Rejected(chunk.raw_text(i), reasons[i], int(chunk.positions[i]))))
        accepted = chunk if valid.all() else chunk.take(valid)
        # with adaptation, points are decided in steps that end where the adapter may act, so a
        # replay in blocks adapts where a live stream does
        blocks, start = [], 0
        while True:
            stop = (len(accepted) if self.adapter is None
                    else start + self.adapter.boundary(self._counts.points) - self._counts.points)
            block, more = self._process_valid(accepted.part(start, stop))
            blocks.append(block)
            rejected += more
            start = stop
            if start >= len(accepted):
                break
        rejected.sort(key=lambda r: r.position)  # the quarantine keeps input order
        return DecisionBlock.concat(blocks), rejected

    def _process_valid(self, accepted: Chunk) -> tuple[DecisionBlock, list[Rejected]]:
        """Score valid points (gaps handled), then let the adapter see them; return the block and gap rejects."""
        pieces, gap_rejects = self._gaps.split(accepted)
        rejected = [self.reject(r) for r in gap_rejects]
        blocks = []
        for piece in pieces:
            if piece.restart:
                self._scaled, self._positions = np.empty(0), np.empty(0, dtype=np.int64)
                self._counts.restarts += 1
            blocks.append(self._score(piece.chunk))
        if not blocks:  # nothing left to score
            blocks.append(self._score(accepted.take(np.zeros(len(accepted), dtype=bool))))
        block = DecisionBlock.concat(blocks)
        if self.adapter is not None:
            self._observe(block)
        self._records(block)  # (after the adapter: it judges the models' evidence, not the range's)
        return block, rejected

    def _observe(self, block: DecisionBlock) -> None:
        """Let the adapter see a scored ``block`` (the models' own evidence), or keep it for later when it
        may: a block of scored points that ends before the adapter's next boundary waits, as the points a
        tick scored do (see :meth:`flush`), up to ``DEFER_MAX`` of them.

        Seeing points at the boundary decides what seeing each at once would have: the adapter acts
        only there. A live point is then answered without the adapter's bookkeeping (an eighth of
        its cost), which is done for many points in one pass."""
        width = 4 + len(self.ensemble.names)  # a deferred row (see observe_ticked)
        pending = len(self._deferred) // width
        # what it will have seen before this block, by its own count (step_many scores points it never sees)
        seen = self.adapter.seen + pending
        if (0 < len(block) and seen + len(block) < self.adapter.boundary(seen) and block.filled is None
                and not block.warmup.any() and pending + len(block) <= DEFER_MAX):
            self._deferred.frombytes(np.column_stack([block.timestamps, block.values, block.p_value, block.is_anomaly,
                                                      block.raw]).tobytes())
            return
        self.flush()
        if (adapted := self.adapter.observe(block, self.ensemble)) is not None:
            self.ensemble = adapted  # the next points are decided with the new calibration
        if self.refitter is not None:
            self._refit()

    def _refit(self) -> None:
        """Swap in models a refit finished (between blocks: a point sees one ensemble), or start a refit when due.

        Both happen only where the adapter may act, so an inline refit swaps at the same point
        whatever the chunking.
        """
        if not self.adapter.at_boundary:
            return
        if (ready := self.refitter.poll()) is not None:
            self.swap(ready[0])
        elif not self.refitter.busy and (data := self.adapter.refit_request(self.refitter.trained_on)) is not None:
            self.refitter.submit(self.ensemble, data)

    def ready_for_tick(self, timestamp: float, value: float) -> int | None:
        """Return the grid position of the next point when a tick may score it (see :mod:`anomaly.online.ticks`), else ``None``.

        A tick takes the common case only: a valid point (finite, in order, not in the
        future), one grid step after the last (no gap), full windows, and not the point at
        which the adapter acts (nor a refit). Every other point goes through :meth:`process`.
        """
        if (timestamp <= self._last_timestamp or len(self._scaled) != self._keep or not math.isfinite(value)
                or not math.isfinite(timestamp) or self.refitter is not None):
            return None
        if self.future_horizon is not None and (
                self._ahead or timestamp > max(self._last_timestamp, self._wall_clock()) + self.future_horizon):
            return None
        grid, gaps = self.ensemble.grid, self._gaps
        position = grid.position(timestamp)
        if gaps._restart or not grid.sequence and (gaps._last is None or position != gaps._last[0] + 1):
            return None
        if gaps._last is None or self._positions[0] <= gaps._last[0] - OFFSET_SPAN:  # (a lane holds its window's
            # grid positions as offsets from its last point)
            return None
        if self.adapter is not None and self._counts.points + 1 >= self._boundary:
            self._boundary = self.adapter.boundary(self._counts.points)  # the next count where the adapter acts
            if self._counts.points + 1 >= self._boundary:
                return None
        return position

    def flush(self) -> None:
        """Let the adapter see the points scored since it last looked (by ticks, or blocks that waited: see
        :meth:`_observe`), before anything else reads it.

        It acts only at its boundaries, and no tick takes a point there, so seeing them now,
        in one block, decides what seeing each as it came would have. A series a lane holds
        (:mod:`anomaly.online.lane`) is taken back from it first."""
        self._take_back()
        if not self._deferred:
            return
        rows = np.frombuffer(self._deferred, dtype=np.float64).reshape(-1, 4 + len(self.ensemble.names))
        self._deferred = array("d")
        self.observe_ticked(rows)

    def observe_ticked(self, rows: np.ndarray) -> None:
        """Let the adapter see points a tick scored: ``rows`` ``(n, 4 + k)``, each point's timestamp, value,
        p-value, flag (1.0 or 0.0) and its ``k`` raw detector scores, in order."""
        ens = self.ensemble
        n = len(rows)
        block = DecisionBlock(
            names=ens.names, alpha=ens.alpha, timestamps=rows[:, 0], values=rows[:, 1], score=np.zeros(n),
            p_value=rows[:, 2], is_anomaly=rows[:, 3] > 0, p_detectors=np.ones((n, len(ens.names))),
            warmup=np.zeros(n, dtype=bool), expected=np.full(n, math.nan), spread=np.full(n, math.nan),
            positions=np.zeros(n, dtype=np.int64), raw=np.ascontiguousarray(rows[:, 4:]))
        if (adapted := self.adapter.observe(block, ens)) is not None:  # (not at a boundary: never)
            self.ensemble = adapted

    def swap(self, ensemble: Ensemble) -> None:
        """Decide the next points with ``ensemble`` (same time grid): the kept history is rescaled to it."""
        self.flush()
        old = self.ensemble
        self._scaled = ensemble.scaler.transform(old.scaler.inverse(self._scaled))
        self._keep = ensemble.window - 1  # a longer window warms up again from what is kept
        self.ensemble = ensemble
        if ensemble.range_ is not None:  # the range seen goes on; the typical step is the new history's
            self._step = ensemble.range_[3]
        if (old.scaler.warp, old.scaler.offset) != (ensemble.scaler.warp, ensemble.scaler.offset):
            # (the range is kept warped: from the old warp to the new one)
            ends = old.scaler.warping.inverse(np.array([self._low, self._high]))
            self._low, self._high = (float(v) for v in ensemble.scaler.warped(np.where(np.isfinite(ends), ends,
                                                                                          [self._low, self._high])))
        if self.adapter is not None:
            self.adapter.models_swapped(ensemble)

    def snapshot(self, extra: dict | None = None, meta: dict | None = None) -> bytes:
        """Return this stream's whole online state as bytes (numpy arrays and JSON, no pickle).

        Held: the window tail, the last valid timestamp, the gap handler, the calibration in
        use (adaptation changes it), the adapter and the counters. ``extra``: more parts
        ``{name: (arrays, meta)}`` to keep with it (the CLI adds its alarm filter); ``meta``:
        JSON-able facts about it (the CLI adds the run's name). Not held: the models, which
        are the run's, and a refit still training (it is dropped, as at any stop).
        :meth:`restore` on a runner of the same run and settings goes on exactly here.
        """
        from .state import pack

        self.flush()
        ensemble = self.ensemble
        calibration = {f"{name}.{key}": value for name, calibrator in ensemble.calibrators_.items()
                       for key, value in calibrator.to_arrays().items()}
        calibration.update({f"{COMBINED}.{key}": value for key, value in ensemble.combined_.to_arrays().items()})
        parts = {
            "runner": ({"scaled": self._scaled, "positions": self._positions, "ahead": np.array(self._ahead),
                        "range": np.array([self._low, self._high, self._seen, self._step])},
                       {"last_timestamp": self._last_timestamp if math.isfinite(self._last_timestamp) else None,
                        "keep": self._keep, "counts": asdict(self.counts)}),
            "gaps": self._gaps.state(),
            "calibration": (calibration, {}),
            **(self.adapter.state() if self.adapter is not None else {}),
            **(extra or {}),
        }
        facts = {"detectors": ensemble.names, "adapt": self.adapter is not None, **(meta or {})}
        if self.refitter is not None:
            facts["trained_on"] = self.refitter.trained_on
        return pack(parts, facts)

    def restore(self, blob: bytes) -> tuple[dict, dict]:
        """Go on from :meth:`snapshot`'s bytes; return the parts this runner did not use and the meta.

        Raises :class:`~anomaly.online.state.SnapshotError` when the snapshot does not fit this runner
        (other detectors, adaptation on in one and off in the other, or not a snapshot)."""
        from ..model.calibration import Calibrator
        from .state import SnapshotError, unpack

        parts, meta = unpack(blob)
        self._take_back()
        ensemble = self.ensemble
        if meta.get("detectors") != ensemble.names:
            raise SnapshotError(f"the snapshot holds detectors {meta.get('detectors')}, these models {ensemble.names}")
        if meta.get("adapt") != (self.adapter is not None):
            raise SnapshotError("the snapshot was taken with adaptation " + ("on" if meta.get("adapt") else "off")
                                + ": restore it with the same setting")
        self._deferred, self._boundary = array("d"), 0  # (the snapshot's adapter has seen all its points)
        try:
            arrays, runner = parts.pop("runner")
            self._scaled = np.asarray(arrays["scaled"], dtype=np.float64)
            self._positions = np.asarray(arrays["positions"], dtype=np.int64)
            self._ahead = [float(t) for t in arrays["ahead"]]
            if "range" in arrays:  # (a snapshot from before record evidence: the range the models start from)
                low, high, seen, step = arrays["range"].tolist()
                self._low, self._high, self._seen, self._step = low, high, int(seen), step
            last = runner["last_timestamp"]
            self._last_timestamp = -math.inf if last is None else float(last)
            self._keep = int(runner["keep"])
            self.counts = Counts(**runner["counts"])
            self._gaps.load_state(*parts.pop("gaps"))
            calibration, _ = parts.pop("calibration")

            def calibrator(name: str) -> Calibrator:
                prefix = name + "."
                return Calibrator.from_arrays({key[len(prefix):]: value for key, value in calibration.items()
                                               if key.startswith(prefix)})

            restored = copy.copy(ensemble)
            restored.calibrators_ = {name: calibrator(name) for name in ensemble.names}
            restored.combined_ = calibrator(COMBINED)
            self.ensemble = restored
            if self.adapter is not None:
                self.adapter.load_state({name: parts.pop(name) for name in ("adapter", "kept", "level", "evidence")})
            if self.refitter is not None and "trained_on" in meta:
                self.refitter.trained_on = int(meta["trained_on"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"the snapshot is incomplete or damaged: {type(exc).__name__}: {exc}") from None
        return parts, meta

    def feedback(self, labels: list) -> int:
        """Apply feedback labels (:mod:`anomaly.feedback`); return how many kept points they cover."""
        self.flush()
        return self.adapter.feedback(labels) if self.adapter is not None else 0

    def close(self) -> None:
        """Let the adapter see the points it has yet to (its drift tests and log), and stop a refit under way, if any."""
        self.flush()
        if self.refitter is not None:
            self.refitter.close()

    def step(self, point: Point) -> Decision:
        """Return the decision for one valid point (scored as given: no gap handling)."""
        return self.step_many([point])[0]

    def step_many(self, points: list[Point]) -> list[Decision]:
        """Return one decision per valid point, in order, scoring the block in one pass."""
        if not points:
            return []
        self._take_back()
        block = self._score(Chunk.from_points(points))
        self._records(block)
        return block.decisions()

    def _records(self, block: DecisionBlock) -> None:
        """Take the real points of a scored ``block`` (not made up to fill a gap) into the range of values seen,
        and let the scored ones beyond it by a record's margin be flagged (see :mod:`anomaly.model.novelty`); count
        the flags.

        Applied once the adapter has seen the block: a record is evidence about the level, not about the
        models, and the adapter's gates, alarms and refits weigh the models' own (measured on NAB: with
        records among them, adaptation went another way and machine_temperature's false alarms rose from 15
        to 82)."""
        real = ~block.filled if block.filled is not None else np.ones(len(block.values), dtype=bool)
        record_p = np.ones(len(block.values))
        record_p[real], self._low, self._high, self._seen = record_p_values(
            self.ensemble.scaler.warped(block.values[real]), self._low, self._high, self._seen, self._step)
        record_p[block.warmup] = 1.0  # (warm-up points are not decided)
        block.record = take_records(block.p_value, block.score, block.is_anomaly, record_p, block.alpha)
        self._counts.anomalies += int(block.is_anomaly.sum())

    def _score(self, chunk: Chunk) -> DecisionBlock:
        """Score the valid points of ``chunk`` with the buffered history before them."""
        ens = self.ensemble
        n = len(chunk)
        scaled = np.concatenate([self._scaled, ens.scaler.transform(chunk.values)])
        positions = np.concatenate([self._positions, ens.grid.positions(chunk.timestamps)])
        start = max(0, len(scaled) - self._keep)
        self._scaled, self._positions = scaled[start:], positions[start:]
        n_warm = max(0, min(n, ens.window - (len(scaled) - n) - 1))
        k = len(ens.names)
        block = DecisionBlock(  # warm-up values; the scored rows are filled in below
            names=ens.names, alpha=ens.alpha, timestamps=chunk.timestamps, values=chunk.values,
            score=np.zeros(n), p_value=np.ones(n), is_anomaly=np.zeros(n, dtype=bool),
            p_detectors=np.ones((n, k)), warmup=np.arange(n) < n_warm, expected=np.full(n, math.nan),
            spread=np.full(n, math.nan), positions=chunk.positions, labels=chunk.labels, kinds=chunk.kinds,
            raw=np.full((n, k), math.nan))
        if n_warm < n:
            d = ens.decide(scaled, positions)
            mine = slice(len(d.p_value) - (n - n_warm), None)  # the rows of this chunk's scored points
            block.score[n_warm:], block.p_value[n_warm:] = d.score[mine], d.p_value[mine]
            block.is_anomaly[n_warm:], block.p_detectors[n_warm:] = d.is_anomaly[mine], d.p_detectors[mine]
            block.expected[n_warm:], block.spread[n_warm:] = d.expected[mine], d.spread[mine]
            block.raw[n_warm:] = d.raw[mine]
        filled = chunk.filled if chunk.filled is not None else np.zeros(n, dtype=bool)
        if filled.any():  # made-up points carry the windows across a gap; they are never flagged
            block.filled = filled
            block.score[filled], block.p_value[filled], block.is_anomaly[filled] = 0.0, 1.0, False
            block.p_detectors[filled] = 1.0
        self._counts.points += n - int(filled.sum())
        self._counts.filled += int(filled.sum())
        self._counts.warmup += int((block.warmup & ~filled).sum())
        return block
