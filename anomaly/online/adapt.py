"""Adaptation: recalibrate on recent points judged normal, after drift and every so often.

A detector trained once alarms for ever after a lasting change (a noisier regime, a new
daily shape), or goes blind when its scores fall. The :class:`Adapter` keeps the last
``history`` points' raw detector scores and refits the calibration from them. Refitting
the calibration is cheap and exact: the models stay as they are.

- **Only normal points teach:** a point is admitted unless a point within ``margin`` points
  of it is confidently anomalous, that is, has a p-value below ``gate`` times the alarm
  threshold (1e-4 for the default 1e-3). An anomaly therefore never teaches the detector
  that it is normal. Marginal flags still teach: they are what a miscalibrated detector
  flags in bulk, and gating them too would keep it miscalibrated (measured on NAB: the
  flags' own exclusions left only the calm stretches to calibrate on).
- **Anchored to the models' own calibration:** a point is also confidently anomalous when
  its p-value under the calibration the models were trained (or refitted) with is below
  ``gate`` times the threshold. Otherwise anomalies that are only marginally flagged leak in,
  raise the thresholds, and the next ones look less anomalous and leak too, until the
  detector is blind (measured on the simulator, whose anomalies are 5% of points: event
  recall fell from 0.98 to 0.13 within 20,000 points). The anchor holds only while the bulk
  of recent scores looks like that calibration's (:meth:`Adapter.same_regime`) and no
  lasting change was seen: in a noisier regime it would keep the new normal's highest
  scores out of calibration and the thresholds too low.
- **A lasting change is not a burst:** alarms that go on for more than ``confirm`` points
  (with pauses of at most ``margin``; marginal alarms count), separate alarms far too
  frequent for the target rate once the bulk of the scores has moved, or the last ``RECENT``
  points' scores lying above the calibration in use in bulk and tail alike, are the new
  normal. They are admitted, and the history before the first one is dropped. From then on
  the anchor and the pooled calibration sample are the models' own rescaled to the new
  regime (each detector by the ratio of its scores' 90th percentiles), so the new regime's
  anomalies still stay out.
- **Drift:** ADWIN watches the deseasoned input level and the calibrated evidence
  (``-log10 p``). A change in either calls for a recalibration at once, on the whole
  recent history. The history is not cut there: ADWIN's bound assumes independent values,
  so on smooth, autocorrelated metrics it fires often, and cutting each time left
  calibration with a few hundred points (measured on NAB: false alarms rose fivefold). The
  detectors look at shape, not level, so a new level alone does not need a new history.
- **Refits:** the models themselves are retrained on the admitted points in the background
  (:mod:`anomaly.online.refit`) when a change was seen, when the admitted points are twice what
  the models were trained on (a short head), and every ``refit_every`` points; see
  :meth:`Adapter.refit_request`.
- **Feedback** (:mod:`anomaly.feedback`): points labelled ``anomaly`` are never admitted;
  points labelled ``false_alarm`` always are, and their scores are taught to calibration.
- **When:** every ``every`` points, after a change, and whenever the admitted sample has
  doubled since the last recalibration (a short training head is soon outgrown), once
  ``min_points`` points are admitted. Decisions are taken only every ``step`` input points,
  so that a replay in blocks and a live stream adapt at the same points and decide alike.
  As in training, the older part of the admitted points calibrates each detector and the
  rest calibrates their combination.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from ..config import AdaptConfig
from ..feedback import Label
from ..io.records import DecisionBlock
from ..model.calibration import (MIN_EMPIRICAL, plausibly_normal, single_precision, taught_calibrator,
                                 unit_tail)
from .drift import Adwin

logger = logging.getLogger(__name__)
GROUP = 16  # points averaged into each value ADWIN sees
NORMAL, ANOMALY = 1, 2  # feedback marks of kept points (0: none)
ANCHOR_MIN = 1000  # calibration points per detector the models' own calibration needs to be an anchor
FREQUENT = 1e-6  # chance under the target rate below which alarms come too often: a lasting change
BULK_MIN = 200  # scored points whose median tells where the bulk of recent scores lies
RECENT = 256  # points whose scores tell whether they moved above the calibration in use (see Adapter._scores_moved)
BULK, TAIL = 0.65, 0.01  # the quantile above which the bulk of a calibration sample lies; the share in its tail
RESCALE_AT = 0.9  # the quantile of scores whose ratio rescales the models' calibration after a lasting change
MOVED = 1e-4  # chance of each of those counts under the calibration: both at once far less (see _scores_moved)
DRIFT_WINDOW = 1024  # groups ADWIN keeps (16,384 points)
CROWDED = 0.5  # share of kept points near confident flags beyond which the flags are the stream's pattern
THINNED = 256  # scores a recalibrated calibrator keeps (see Calibrator.thinned): memory of many series
# without refits (each of many series) the kept points are thinned every THIN_STEP points: the tail (a combined
# p-value below TAIL_COMBINED or a detector's below TAIL_DETECTOR, under the calibration in use) kept whole, one
# point in THIN_EVERY of the bulk (see KeptPoints). Every 128 points, not 256: the room for the points up to the next
# thinning is half (2.7 KB a series less); judging the tail cost 0.5 ms a call before p-values were compiled, now
# too little to measure, and the verdicts on NAB without refits are the same, file for file
THIN_EVERY, THIN_STEP = 16, 128
TAIL_COMBINED, TAIL_DETECTOR = 0.1, 0.05


@dataclass(frozen=True)
class RefitData:
    """What a refit trains on: the kept input points, and which must not teach."""

    timestamps: np.ndarray  # (n,) epoch seconds of the kept points past warm-up (gap fillers included)
    values: np.ndarray  # (n,)
    exclude: np.ndarray  # (n,) bool: not admitted (confident anomalies and their margins, labelled anomalies) or flagged
    labels: list[Label]  # feedback so far: false alarms are taught to the new calibration
    reason: str
    flagged: np.ndarray | None = None  # (n,) bool: what the models in use decided (None: not known)


class KeptPoints:
    """The last ``capacity`` points of a stream, one array per column, grown in place.

    ``kept.raw`` and ``kept.values`` are views that write through (``kept.timestamps`` too, unless
    thinned: see below). The
    flags (``flags``, ``anchored``, ``alarms``, ``usable``, ``filled``) and the feedback
    ``marks`` share one byte a point (``bits``): reading one gives a new array, and
    :meth:`set` writes it (one byte a point instead of six: memory of many series). An append copies
    only the new points into spare room; once every ``capacity / 16`` points the kept ones move
    to the front. A live stream appends one point at a time, and copying the whole history each
    time cost more than scoring the point.

    **Thinned** (``thin`` > 1; the adapter of a stream without refits, such as each of many series):
    every ``THIN_STEP`` stream positions, the points appended since are thinned. A point stays when it
    lies in the tail (``in_tail``, set by the adapter: a low p-value under the calibration in use), is
    flagged or labelled, or is the one drawn from its stretch of ``thin`` positions (at an offset a hash
    of the stretch picks: a fixed offset would sample only some phases of an hourly cycle). A drawn point
    stands for ``thin`` points of the bulk (``weights``). So the tail, where calibration's fitted tails
    and low p-values come from, is kept whole, and the bulk, whose quantiles one point in ``thin`` still
    tells, is sampled. Spans are measured in stream positions, not rows (``positions``, ``since``), and
    every statistic counts a kept point by its weight. Thinning happens at the same stream positions
    whatever the blocks the points came in, so a replay and a live stream keep the same points.
    A thinned history holds its timestamps as single-precision seconds from an epoch of its own
    (moved forward as points are forgotten), as long as that is exact (whole seconds within 194
    days are, whole minutes within two years; a fraction of a second seldom is); else in double
    precision from then on.
    ``kept.timestamps`` is then a copy.
    """

    COLUMNS = {  # name: (dtype, value of a column an append leaves out)
        # (n, k) raw detector scores; NaN where the models were since swapped out. Single precision, as every
        # raw score is made (see calibration.single_precision), so keeping them loses nothing; compared with or
        # joined to double-precision arrays they are widened exactly, and only quantiles are taken in float64
        "raw": (np.float32, np.nan),
        "bits": (np.uint8, 0),  # the flags below, one bit each, and the marks in MARKS_SHIFT and the bit above
        "timestamps": (float, np.nan),  # epoch seconds
        "values": (float, np.nan),
        "gap": (np.uint8, 1),  # a thinned history's: points from the kept point before (under 2 ``thin``)
    }
    BITS = {  # flag: its bit in ``bits`` (each False when an append leaves it out)
        "flags": 1,  # confidently anomalous (p below gate * alpha)
        "anchored": 2,  # confidently anomalous under the models' own calibration (see Adapter)
        "alarms": 4,  # the decisions made (p < alpha)
        "usable": 8,  # scored past warm-up, not made up to fill a gap
        "filled": 16,  # made up to fill gaps: a refit trains on them, nothing else reads this
        "represents": 128,  # a thinned history's: this point stands for ``thin`` points of the bulk
    }
    MARKS_SHIFT = 5  # feedback marks (NORMAL, ANOMALY or 0) in bits 5 and 6

    START_ROWS = 512  # rows allocated at first: room grows by doubling, up to the capacity and a sixteenth

    # what only a refit reads: in a snapshot only for refits, and the values (8 bytes a point) kept only for them
    # (which points were filled in costs nothing more: a bit of ``bits``)
    FOR_REFITS = ("values", "filled")

    def __init__(self, capacity: int, k: int, for_refits: bool = True, thin: int = 0):
        """``capacity``: points of history. ``for_refits``: keep the input values too, and snapshot them and which
        points were filled in (only a refit reads them). ``thin``: thin the points kept (see the class; 0 or 1:
        keep every point)."""
        self.capacity = capacity
        self.for_refits = for_refits
        self.thin = thin if thin > 1 else 0
        self.in_tail = None  # (thinned) raw scores (m, k) -> (m,) bool: which are kept whole (None: none)
        self._appended = 0  # points appended since the start: the next one's stream position
        self._thinned_to = 0  # (thinned) the points before this position are thinned
        self._last = -1  # (thinned) the stream position of the last point kept
        # (thinned) timestamps are held as float32 seconds since _epoch while that is exact (see the class; memory
        # of many series: 4 bytes a point of 26); _epoch None: as they are, in double precision
        self._epoch: float | None = None
        self._narrow = bool(self.thin)
        self._names = [name for name in self.COLUMNS if (for_refits or name not in self.FOR_REFITS)
                       and (self.thin or name != "gap")]
        # spare room beyond the capacity: the kept points move to the front once per sixteenth of the
        # capacity of appends (16 rows copied per point, 0.5 KB), not twice the capacity held (memory of
        # many series: a quarter spare held 37 KB of 187 at four detectors)
        self._room = capacity + max(capacity // 16, 256)
        # (thinned: room for the points before the first thinning, no more; young series are most of many)
        self._columns = self._allocated(min(THIN_STEP if self.thin else self.START_ROWS, self._room), k)
        self._start = self._end = 0

    def _allocated(self, rows: int, k: int) -> dict[str, np.ndarray]:
        # a young stream (or one of many series) holds little: memory grows with what is kept
        return {name: np.full((rows, k) if name == "raw" else rows, fill,
                              dtype=np.float32 if name == "timestamps" and self._narrow else dtype)
                for name, (dtype, fill) in self.COLUMNS.items() if name in self._names}

    def _stamps(self, timestamps) -> np.ndarray | float:
        """Return ``timestamps`` (epoch seconds, an array or a scalar) as the timestamps column holds them."""
        if not self._narrow:
            return timestamps
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if self._epoch is None:
            finite = timestamps[np.isfinite(timestamps)]
            if not finite.size:  # (no epoch yet: none to measure from)
                return timestamps.astype(np.float32)
            self._epoch = float(finite[0])
        narrow = exactly_single(timestamps - self._epoch)
        if narrow is None:
            self._widen()
            return timestamps
        return narrow

    def _widen(self) -> None:
        """Hold the timestamps in double precision from now on (single precision no longer holds them exactly)."""
        column = self._columns["timestamps"]
        self._columns["timestamps"] = self._epoch + column.astype(np.float64)
        self._narrow, self._epoch = False, None

    def _move_epoch(self) -> None:
        """Move the epoch to the first kept point (the seconds since it stay small enough to be exact)."""
        column = self._columns["timestamps"][self._start:self._end]
        if not (self._narrow and len(column) and column[-1] > 2.0 ** 23 and np.isfinite(column[0])):
            return
        shift = float(column[0])
        narrow = exactly_single(column.astype(np.float64) - shift)
        if narrow is None:
            self._widen()
            return
        column[:] = narrow
        self._epoch += shift

    def _grow(self, needed: int) -> None:
        """Make room for ``needed`` rows from the start (at most ``_room``), keeping the points kept."""
        rows = len(self._columns["bits"])
        # thinned, the rows kept rise and fall with the tail's share: room for the points up to the next thinning
        rows = min(self._room, needed + THIN_STEP if self.thin else max(2 * rows, needed))
        self._reallocate(rows)

    def _reallocate(self, rows: int) -> None:
        k = self._columns["raw"].shape[1]
        grown = self._allocated(rows, k)
        n = len(self)
        for name, column in self._columns.items():
            grown[name][:n] = column[self._start:self._end]
        self._columns, self._start, self._end = grown, 0, n

    def __len__(self) -> int:
        return self._end - self._start

    def __getattr__(self, name: str) -> np.ndarray:
        columns = self.__dict__.get("_columns")
        if columns is None:
            raise AttributeError(name)
        if name in self.BITS:
            return (columns["bits"][self._start:self._end] & self.BITS[name]) != 0
        if name == "marks":
            return ((columns["bits"][self._start:self._end] >> self.MARKS_SHIFT) & 3).astype(np.int8)
        if name not in columns:
            raise AttributeError(name)
        if name == "timestamps" and self._narrow:
            return self._epoch + columns[name][self._start:self._end].astype(np.float64)
        return columns[name][self._start:self._end]

    @property
    def positions(self) -> np.ndarray:
        """Return ``(n,)`` stream positions of the kept points (0: the first point ever appended)."""
        if not self.thin:
            return np.arange(self._appended - len(self), self._appended)
        gaps = self._columns["gap"][self._start:self._end].astype(np.int64)
        # each kept point lies its successor's gap before it
        after = gaps.sum() - np.cumsum(gaps)  # points from each kept one to the last
        return self._last - after

    @property
    def weights(self) -> np.ndarray:
        """Return ``(n,)`` how many points each kept point stands for: ``thin`` for a sample of a thinned bulk,
        else 1."""
        if not self.thin:
            return np.ones(len(self), dtype=np.int64)
        return np.where(self.represents, self.thin, 1)

    def since(self, points: int) -> int:
        """Return how many kept points (at the end) lie within the last ``points`` stream positions."""
        if not self.thin:
            return min(points, len(self))
        return len(self) - int(np.searchsorted(self.positions, self._appended - points, side="left"))

    def sample(self, where) -> np.ndarray:
        """Return ``(m, k)`` the raw scores of the kept points ``where`` (a boolean mask over them, or indices),
        each repeated as many times as the points it stands for (see ``weights``), in time order."""
        return np.repeat(self.raw[where], self.weights[where], axis=0)

    def set(self, name: str, where, value) -> None:
        """Set flag ``name`` (one of ``BITS``) or ``"marks"`` of the kept points ``where`` (an index, a slice or
        a boolean mask over the kept points) to ``value`` (one, or one per point selected)."""
        bits = self._columns["bits"][self._start:self._end]  # a view: writes go to the kept points
        if name == "marks":
            mask = np.uint8(3 << self.MARKS_SHIFT)
            value = (np.asarray(value, dtype=np.uint8) << self.MARKS_SHIFT).astype(np.uint8)
        else:
            mask = np.uint8(self.BITS[name])
            value = np.where(np.asarray(value, dtype=bool), mask, np.uint8(0))
        bits[where] = (bits[where] & ~mask) | value

    @classmethod
    def _packed(cls, n: int, columns: dict) -> np.ndarray:
        """Return ``(n,)`` bytes holding the flags and marks in ``columns`` (each an ``(n,)`` array or a scalar;
        those left out are False and 0)."""
        bits = np.zeros(n, dtype=np.uint8)
        for name, bit in cls.BITS.items():
            if name in columns:
                bits |= np.where(np.asarray(columns[name], dtype=bool), np.uint8(bit), np.uint8(0))
        if "marks" in columns:
            bits |= ((np.asarray(columns["marks"]).astype(np.uint8) & 3) << cls.MARKS_SHIFT).astype(np.uint8)
        return bits

    def append(self, **new) -> None:
        """Keep ``n`` new points (each column or flag an ``(n,)`` array or a scalar; left-out ones get their
        default)."""
        n = max(len(v) for v in new.values() if np.ndim(v))
        if not self.thin:
            self._append(n, new)
            return
        done = 0
        while done < n:  # in parts that end where the stream crosses a multiple of THIN_STEP
            part = min(n - done, THIN_STEP - self._appended % THIN_STEP)
            self._append(part, new if part == n else
                         {name: v[done:done + part] if np.ndim(v) else v for name, v in new.items()})
            done += part
            if self._appended % THIN_STEP == 0:
                self._thin_out()

    def _append(self, n: int, new: dict) -> None:
        new = {name: np.asarray(v)[-self.capacity:] if np.ndim(v) else v for name, v in new.items()}
        if "timestamps" in new:
            new["timestamps"] = self._stamps(new["timestamps"])
        self._appended += n
        n = min(n, self.capacity)  # a block longer than the capacity keeps its last points
        new["bits"] = self._packed(n, new)
        rows = len(self._columns["bits"])
        if self._end + n > rows and rows < self._room:  # out of room, and room may still grow
            self._grow(min(len(self), self.capacity - n) + n)
        if self._end + n > len(self._columns["bits"]):  # out of room: move the points still kept to the front
            keep = min(len(self), self.capacity - n)
            for column in self._columns.values():
                column[:keep] = column[self._end - keep:self._end]
            self._start, self._end = 0, keep
        for name, column in self._columns.items():
            column[self._end:self._end + n] = new.get(name, self.COLUMNS[name][1])
        if self.thin and n and self._end > self._start:  # the first new point lies this far after the last kept
            self._columns["gap"][self._end] = self._appended - n - self._last
        self._end += n
        self._last = self._appended - 1
        if not self.thin:
            self._start = max(self._start, self._end - self.capacity)

    def _thin_out(self) -> None:
        """Thin the points appended since the last time, and forget those beyond the capacity (see the class)."""
        positions = self.positions
        older = positions >= self._thinned_to
        self._thinned_to = self._appended
        raw = self._columns["raw"][self._start:self._end]
        bits = self._columns["bits"][self._start:self._end]
        tail = np.zeros(len(raw), dtype=bool)
        judged = older & np.isfinite(raw).all(axis=1)  # (NaN: scored by models since swapped out, or not scored)
        if self.in_tail is not None and judged.any():
            tail[judged] = self.in_tail(raw[judged])
        told = (bits & np.uint8(self.BITS["flags"] | self.BITS["anchored"] | self.BITS["alarms"]
                                | (3 << self.MARKS_SHIFT))) != 0
        drawn = positions % self.thin == sampled_offset(positions // self.thin, self.thin)
        sampled = older & ~tail & ~told & drawn
        keep = (~older | tail | told | sampled) & (positions >= self._appended - self.capacity)
        bits[sampled] |= np.uint8(self.BITS["represents"])
        kept_positions = positions[keep]
        gaps = np.diff(kept_positions, prepend=kept_positions[0] - 1 if len(kept_positions) else 0)
        # (one point drawn in every stretch of `thin`: kept points lie under 2 `thin` apart)
        self._columns["gap"][self._start:self._end][keep] = gaps.astype(np.uint8)
        n = int(keep.sum())
        self._last = int(kept_positions[-1]) if n else self._last
        for column in self._columns.values():
            column[:n] = column[self._start:self._end][keep]
        self._start, self._end = 0, n
        self._move_epoch()
        # room for the points up to the next thinning (appends come in parts that end there), and an eighth more
        # for the tail's share to grow without a copy; given back when it is a quarter too much. (Kept to what the
        # next points need and a sixteenth, most thinnings reallocated: the freed arrays fragmented the heap, and
        # a series' resident memory grew by more than the rows saved)
        needed = n + THIN_STEP
        if not needed <= len(self._columns["bits"]) <= needed + n // 4:
            self._reallocate(needed + n // 8)

    def drop_before(self, index: int) -> None:
        """Forget the first ``index`` kept points."""
        self._start = min(self._end, self._start + index)

    def _named(self) -> list[str]:
        """The columns and flags a snapshot holds, by name (as before they shared a byte)."""
        flags = [name for name in self.BITS if (self.for_refits or name not in self.FOR_REFITS)
                 and (self.thin or name != "represents")]
        return [name for name in self._names if name != "bits"] + flags + ["marks"]

    def state(self) -> tuple[dict, dict]:
        """Return ``(arrays, meta)``: the kept points, one array per column and flag (see :mod:`anomaly.online.state`)."""
        arrays = {name: np.array(getattr(self, name)) for name in self._named()}
        return arrays, ({"appended": self._appended, "thinned_to": self._thinned_to, "last": self._last}
                        if self.thin else {})

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Keep exactly the points of :meth:`state`'s output (at most ``capacity``)."""
        n = min(len(arrays["usable"]), self.capacity)
        self._narrow, self._epoch = bool(self.thin), None  # (the timestamps held afresh)
        self._columns = self._allocated(min(self._room, max(n, self.START_ROWS)), self._columns["raw"].shape[1])
        tail = {name: array[len(array) - n:] for name, array in arrays.items()}
        if "timestamps" in tail:
            tail["timestamps"] = self._stamps(tail["timestamps"])
        tail["bits"] = self._packed(n, {name: array for name, array in tail.items()
                                        if name in self.BITS or name == "marks"})
        for name, column in self._columns.items():
            if name not in tail:  # (values, from a snapshot taken without refits; gaps, from one not thinned)
                column[:n] = self.COLUMNS[name][1]
                continue
            if tail[name].shape[1:] != column.shape[1:]:
                raise ValueError(f"kept points: column {name} has shape {arrays[name].shape}, expected "
                                 f"(n, {', '.join(map(str, column.shape[1:]))})")
            column[:n] = tail[name]
        self._start, self._end = 0, n
        self._appended = int(meta.get("appended", n))
        self._thinned_to = int(meta.get("thinned_to", self._appended - n))
        self._last = int(meta.get("last", self._appended - 1))


class Adapter:
    """Watches one stream's decisions; :meth:`observe` returns a recalibrated ensemble when one is due."""

    def __init__(self, ensemble, settings: AdaptConfig | None = None):
        self.settings = s = settings or AdaptConfig()
        self.original = ensemble  # as trained: its calibration samples are pooled with recent ones
        self._anchor_off = False  # a lasting change was seen: the models' own calibration no longer applies
        self._accepted_until = -np.inf  # epoch s: alarms up to here were taken as a lasting change
        self._changed_from = -np.inf  # epoch s: where the last lasting change began
        self._unanchored = 0  # kept points at the end whose `anchored` column is not yet worked out
        # lingering flags come while an event is inside the shortest window; a wider margin keeps
        # too many ordinary points out and leaves calibration with only the quietest stretches
        self.margin = s.margin or ensemble.shortest_window
        self.confirm = s.confirm or 2 * ensemble.window
        k = len(ensemble.names)
        # kept points: the calibration uses the last `history`, a refit all of them
        self.kept = KeptPoints(max(s.history, s.refit_history if s.refit else 0), k, for_refits=s.refit,
                               thin=0 if s.refit else THIN_EVERY)
        self.kept.in_tail = self._in_tail
        self._in_use = ensemble  # the ensemble deciding: it judges what a thinned history keeps whole
        self._labels: list[Label] = []
        self._taught = np.empty((0, k))  # raw scores of points labelled false alarms
        self._since_refit = 0
        self._seen = 0  # input points observed (filled ones not counted)
        self._admitted_at_refit = 0  # admitted points the last recalibration had
        self._changed = False  # a change was seen and is not yet recalibrated for
        self._refit_wanted = ""  # why the models should be retrained ("" while they need not)
        self._since_models = 0  # input points since the models were trained or swapped in
        self._refit_tried = 0  # admitted points the last refit was asked with
        self._level, self._evidence = self._drift_tests()
        self._pending = np.empty((0, 2))  # level and evidence of points not yet in a group of GROUP
        self.at_boundary = False  # whether the last block ended where the adapter may act
        self.recalibrations = 0
        self.changes = 0

    def _in_tail(self, raw: np.ndarray) -> np.ndarray:
        """Return ``(m,)`` bool: which raw scores ``(m, k)`` lie in the tail under the calibration in use (see
        :class:`KeptPoints`): where the combination's calibration and each detector's is fitted."""
        p_detectors = self._in_use.detector_p_values(raw)
        return ((self._in_use.combined_p_value(p_detectors) < TAIL_COMBINED)
                | (p_detectors < TAIL_DETECTOR).any(axis=1))

    def _drift_tests(self) -> tuple[Adwin, Adwin]:
        """Return fresh ADWIN tests of the input level and of the evidence."""
        # without refits (many series): in single precision, as the kept points are thinned
        dtype = np.float64 if self.settings.refit else np.float32
        return (Adwin(self.settings.delta, max_window=DRIFT_WINDOW, dtype=dtype),
                Adwin(self.settings.delta, max_window=DRIFT_WINDOW, dtype=dtype))

    _COUNTERS = ("_anchor_off", "_accepted_until", "_changed_from", "_unanchored", "_since_refit", "_seen",
                 "_admitted_at_refit", "_changed", "_refit_wanted", "_since_models", "_refit_tried", "at_boundary",
                 "recalibrations", "changes")

    def state(self) -> dict[str, tuple[dict, dict]]:
        """Return the parts of this adapter's state, ``{name: (arrays, meta)}`` (see :mod:`anomaly.online.state`).

        The ensemble it pools with (``original``) is not in it: that is the run's, loaded again."""
        counters = {name.lstrip("_"): getattr(self, name) for name in self._COUNTERS}
        labels = [[label.kind, label.start, label.end] for label in self._labels]
        return {"adapter": ({"taught": self._taught, "pending": self._pending}, {**counters, "labels": labels}),
                "kept": self.kept.state(), "level": self._level.state(), "evidence": self._evidence.state()}

    def load_state(self, parts: dict[str, tuple[dict, dict]]) -> None:
        """Go on from :meth:`state`'s output."""
        arrays, meta = parts["adapter"]
        for name in self._COUNTERS:  # a counter newer than the snapshot keeps its starting value
            setattr(self, name, type(getattr(self, name))(meta.get(name.lstrip("_"), getattr(self, name))))
        self._labels = [Label(kind, float(start), float(end)) for kind, start, end in meta["labels"]]
        self._taught = np.asarray(arrays["taught"], dtype=np.float64).reshape(-1, self._taught.shape[1])
        self._pending = np.asarray(arrays["pending"], dtype=np.float64).reshape(-1, 2)
        self.kept.load_state(*parts["kept"])
        self._level.load_state(*parts["level"])
        self._evidence.load_state(*parts["evidence"])

    def observe(self, block: DecisionBlock, ensemble):
        """Take in a block of decisions; return a recalibrated copy of ``ensemble`` when due, else ``None``."""
        if len(block) == 0:
            return None
        self._in_use = ensemble
        usable = ~block.warmup if block.filled is None else ~block.warmup & ~block.filled
        marks = np.zeros(len(block), dtype=np.int8)
        for label in self._labels:
            marks[label.covers(block.timestamps)] = NORMAL if label.kind == "false_alarm" else ANOMALY
        self.kept.append(raw=block.raw, flags=block.p_value < self.settings.gate * block.alpha, usable=usable,
                         alarms=block.is_anomaly, filled=False if block.filled is None else block.filled,
                         timestamps=block.timestamps, values=block.values, marks=marks)
        self._since_refit += len(block)
        new_points = len(block) - (0 if block.filled is None else int(block.filled.sum()))
        self._seen += new_points
        self._unanchored += len(block)
        self._since_models += new_points
        self._watch(block, ensemble, usable)
        # decide only at fixed counts: replay and live alike
        self.at_boundary = self._seen == self.boundary(self._seen - 1)
        if not self.at_boundary:
            return None
        self._lasting_change(block.alpha, ensemble)
        scale = self._rescaled() if self._anchor_off else None  # the models' calibration to the new regime
        self._anchor(block.alpha, scale)
        history = self.settings.history
        first = len(self.kept) - self.kept.since(history)  # the kept points of the last `history`
        admitted = self.admitted(history) & np.isfinite(self.kept.raw[first:, 0])
        count = int(self.kept.weights[first:][admitted].sum())
        # young histories (a short training head, or just after a change) are recalibrated each
        # time the sample has doubled; then every `every` points
        due = self._since_refit >= self.settings.every or self._changed or count >= 2 * self._admitted_at_refit
        if not due or count < self.settings.min_points:
            return None
        self._since_refit, self._changed, self._admitted_at_refit = 0, False, count
        self.recalibrations += 1
        # after a lasting change the models' own calibration describes the old regime: pooled in only rescaled to
        # the new one (see _rescaled), and not at all before that can be told
        return recalibrated(ensemble, self.kept.sample(first + np.flatnonzero(admitted)), self.original,
                            self._taught, pooled=not self._anchor_off or scale is not None, scale=scale)

    def feedback(self, labels: list[Label]) -> int:
        """Apply feedback labels to the kept points and to those to come; return how many kept points they cover.

        A false alarm's kept scores are taught to calibration, and the next boundary
        recalibrates. Labels over points no longer kept still mark points to come, and
        ``train.py --feedback`` applies them to a history.
        """
        covered_total = 0
        kept = self.kept
        for label in labels:
            self._labels.append(label)
            covered = label.covers(kept.timestamps) & kept.usable
            covered_total += int(covered.sum())
            if label.kind == "false_alarm":
                kept.set("marks", covered, NORMAL)
                taught = kept.sample(covered)
                self._taught = np.concatenate([self._taught, taught[np.isfinite(taught).all(axis=1)]])
            else:
                kept.set("marks", covered, ANOMALY)
            if covered.any():
                self._changed = True
        return covered_total

    def refit_request(self, trained_on: int) -> RefitData | None:
        """Return what to retrain the models on when a refit is due, else ``None``.

        Due at a boundary, once ``refit_min`` points are admitted and as many have passed
        since the models were trained or swapped in, when: a change was seen since; the
        admitted points number twice the ``trained_on`` points the models learned from; or
        ``refit_every`` points have passed.
        """
        s = self.settings
        if not (s.refit and self.at_boundary) or self._since_models < s.refit_min:
            return None
        admitted = self.admitted()
        count = int(admitted.sum())
        reason = (self._refit_wanted or ("more history" if count >= 2 * max(trained_on, self._refit_tried) else "")
                  or ("periodic" if self._since_models >= s.refit_every else ""))
        if not reason or count < s.refit_min:
            return None
        self._refit_wanted = ""
        self._since_models = 0  # the next refit is counted from this one
        self._refit_tried = count  # "more history" next when this has doubled
        # filled points carry the series across short gaps, as they did for scoring (a refit's history
        # would otherwise count them missing and could be refused)
        # every flagged point stays out too, even one recalibration admits (a marginal flag, an alarm
        # taken as a lasting change): the models never learn what they called anomalous, and
        # training keeps out every window that holds one
        kept = self.kept
        points = kept.usable | kept.filled
        exclude = (~admitted | (kept.alarms & (kept.marks != NORMAL))) & kept.usable
        return RefitData(kept.timestamps[points], kept.values[points], exclude[points],
                         list(self._labels), reason, kept.alarms[points])

    def models_swapped(self, ensemble) -> None:
        """Start over with new models: their calibration is the baseline; kept scores of the old ones are void."""
        self.original = ensemble
        self._anchor_off = False
        self.kept.raw[:] = np.nan
        self.kept.set("anchored", slice(None), False)
        self._unanchored = 0
        self._taught = np.empty((0, len(ensemble.names)))  # refits are taught the labels themselves
        self._level, self._evidence = self._drift_tests()
        self._pending = np.empty((0, 2))
        self._since_refit, self._admitted_at_refit, self._since_models = 0, 0, 0

    @property
    def seen(self) -> int:
        """Input points taken in so far (filled ones not counted): where :meth:`boundary` counts from."""
        return self._seen

    def boundary(self, seen: int) -> int:
        """Return the first input count after ``seen`` at which the adapter may act.

        Every ``step`` points for 16 steps, then every 4 steps for 16 of those, then every 16
        steps: a young stream needs adapting most (NAB's files are a few thousand points),
        and each step is a scoring pass of its own (measured: 1024-point steps cost a
        third of replay speed). Replay cuts its blocks at these counts, so it adapts where a
        live stream does.
        """
        step, start = self.settings.step, 0
        while seen >= start + 16 * step and step < 16 * self.settings.step:
            start += 16 * step
            step *= 4
        return start + ((seen - start) // step + 1) * step

    def admitted(self, last: int | None = None) -> np.ndarray:
        """Return which of the kept points may teach the detector: none confidently anomalous nearby.

        When more than ``max_share`` of the kept points are confidently anomalous, or more than
        ``CROWDED`` of them lie within the margin of one, all are admitted: anomalies are rare, and
        so common a pattern is the stream's own. Gating it would keep it out of calibration for
        ever, and each recalibration would make it look more anomalous still (measured on NAB's
        stepped series: 1 point in 5). The second test catches a short pattern that recurs often,
        a new hourly job: one point in twelve is below ``max_share``, yet with the margins it left
        nothing to learn from (measured on the simulator, a new bump of 12 times the noise every 12
        points: flagged at every hour to the end of 5,000 points, 426-430 flags; now the last flag
        comes 528 points after the bump began). Feedback
        overrides both: a labelled anomaly never teaches, a labelled false alarm always does.
        """
        # ``last``: only the kept points of the last so many
        kept = slice(len(self.kept) - self.kept.since(last) if last else 0, None)
        usable, marks = self.kept.usable[kept], self.kept.marks[kept]
        weights, positions = self.kept.weights[kept], self.kept.positions[kept]
        anchored = self._anchor_off or self.same_regime()  # (after a lasting change: rescaled; see _anchor)
        flags = self.kept.flags[kept] | (self.kept.anchored[kept] if anchored else False)
        flags &= usable & (marks != NORMAL)
        gated = usable
        if weights[flags].sum() <= self.settings.max_share * weights[usable].sum():  # else: the stream's pattern
            # within the margin of a flag, both ways (in stream positions: a thinned history skips points)
            flagged = positions[flags]
            near = np.zeros(len(positions), dtype=bool)
            if len(flagged):  # the first flag at or after a point's position less the margin is within it
                nearest = flagged[np.minimum(np.searchsorted(flagged, positions - self.margin), len(flagged) - 1)]
                near = (nearest >= positions - self.margin) & (nearest <= positions + self.margin)
            if weights[near & usable].sum() <= CROWDED * weights[usable].sum():  # else: crowded, the pattern too
                gated = usable & ~near
        return (gated & (marks != ANOMALY)) | (usable & (marks == NORMAL))

    def _anchor(self, alpha: float, scale: np.ndarray | None = None) -> None:
        """Mark the points kept since the last boundary that are confidently anomalous under the models' own calibration.

        Worked out at boundaries, in one pass, because only :meth:`admitted` reads them and a
        live stream observes one point at a time. Only for models calibrated on at least
        ``ANCHOR_MIN`` points per detector: a short head's calibration is too coarse to vouch
        for anything. After a lasting change each detector's scores are first divided by its
        ``scale`` to the new regime (:meth:`_rescaled`; ``None`` while it cannot be told: nothing is
        marked), and every point since the change is marked again.
        """
        n, self._unanchored = self.kept.since(self._unanchored), 0
        reference = self.original
        if min(c.size for c in reference.calibrators_.values()) < ANCHOR_MIN:
            return
        if self._anchor_off:
            n = int((self.kept.timestamps >= self._changed_from).sum())
            if scale is None:
                return
        else:
            scale = 1.0
        if n == 0:
            return
        raw, usable = self.kept.raw[-n:], self.kept.usable[-n:]
        scored = usable & np.isfinite(raw).all(axis=1)  # NaN: scored by models since swapped out
        p_value = reference.combined_p_value(reference.detector_p_values(raw[scored] / scale))
        self.kept.set("anchored", len(self.kept) - n + np.flatnonzero(scored), p_value < self.settings.gate * alpha)

    def _rescaled(self) -> np.ndarray | None:
        """Return, per detector, how many times the 90th percentile of the scores since the last lasting change
        (confidently anomalous points left out) exceeds that of the models' calibration sample, at least 1;
        ``None`` while fewer than ``BULK_MIN`` such points were scored.

        A noisier regime scales the scores of normal points (a forecast's residuals by the noise, an
        autoencoder's squared error about by its square), and a few per cent of anomalies barely move that
        percentile. Divided by this, the new regime's scores are judged by the models' own calibration again,
        so its anomalies stay out of calibration (without: after a change to 1.5 times the noise, recalibration
        learned the anomalies among the new points and missed 24 of the next 27 events on the simulator); and
        times this, the models' calibration sample is pooled into recalibration again (without: the first
        recalibrations, on a few hundred points, missed spikes and level shifts).
        """
        kept = self.kept
        since = (kept.timestamps >= self._changed_from) & kept.usable & ~kept.flags
        since &= np.isfinite(kept.raw).all(axis=1)
        # quantiles interpolate in their array's precision; a thinned history's points count by their weights
        recent = kept.sample(since).astype(np.float64)
        if len(recent) < BULK_MIN:
            return None
        reference = np.array([np.quantile(double(self.original.calibrators_[name].sorted_), RESCALE_AT)
                              for name in self.original.names])
        ratio = np.quantile(recent, RESCALE_AT, axis=0) / np.where(reference > 0, reference, np.inf)
        return np.maximum(np.nan_to_num(ratio, nan=1.0), 1.0)

    def _bulk_moved(self) -> bool:
        """Return whether the bulk of recent scores has left the models' own calibration: for some detector, the
        median raw score of the last ``every`` scored points lies above its calibration sample's 75th percentile
        (see :meth:`same_regime`; anomalies, a few per cent of points, barely move a median)."""
        bulk = self._bulk(BULK_MIN)
        return bulk is not None and not bulk.all()

    def _bulk(self, least: int) -> np.ndarray | None:
        """Return, per detector, whether the median raw score of the last ``every`` scored points lies at or below
        the models' calibration sample's 75th percentile; ``None`` when fewer than ``least`` points were scored
        by these models."""
        kept = self.kept
        first = len(kept) - kept.since(4 * self.settings.every)  # enough kept points to hold `every` scored ones
        scored = kept.usable[first:] & np.isfinite(kept.raw[first:]).all(axis=1)
        recent = kept.sample(first + np.flatnonzero(scored))[-self.settings.every:].astype(np.float64)  # (as above)
        if len(recent) < least:
            return None
        reference = [np.quantile(double(self.original.calibrators_[name].sorted_), 0.75)
                     for name in self.original.names]
        return np.median(recent, axis=0) <= reference

    def same_regime(self) -> bool:
        """Return whether the models' own calibration may still judge what teaches (see the module).

        It may while no lasting change was seen since the models were trained or swapped in,
        and the bulk of the stream's recent scores looks like their calibration sample: for
        every detector, the median raw score of the last ``every`` usable points lies at or
        below the sample's 75th percentile. A few per cent of anomalies move the median only
        a little; a noisier regime moves the bulk up (measured on the quick models: 2.5 times the
        noise put the autoencoders' and the forest's medians at their samples' 96th to 99th
        percentiles, 1.3 times at the 63rd to 75th; S-H-ESD's robust scores did not move). A
        change only in the far tail leaves the medians where they were, and the anchor stays.
        """
        if self._anchor_off:
            return False
        bulk = self._bulk(self.settings.min_points)  # None: too few scored by these models to tell
        return bulk is not None and bool(bulk.all())

    def _watch(self, block: DecisionBlock, ensemble, usable: np.ndarray) -> None:
        """Feed ADWIN the deseasoned level and the evidence of the block's usable points."""
        if not usable.any():
            return
        level = ensemble.deseasoned(block.timestamps[usable], block.values[usable])
        # capped at the threshold's evidence: ADWIN follows how often points come near it, not how
        # extreme each anomaly is (each would otherwise read as a change)
        evidence = np.minimum(-np.log10(np.maximum(block.p_value[usable], 1e-300)), -np.log10(block.alpha))
        # ADWIN reads means of GROUP consecutive points: 1/GROUP of the cost, and closer to the
        # independent values its bound assumes on autocorrelated metrics; groups are cut by
        # position in the stream, so detection does not depend on how points arrive
        self._pending = np.concatenate([self._pending, np.column_stack([level, evidence])])
        whole = len(self._pending) // GROUP * GROUP
        means = self._pending[:whole].reshape(-1, GROUP, 2).mean(axis=1)
        self._pending = self._pending[whole:].copy()  # (a view would hold the whole block: memory of many series)
        level_changes = self._level.update(means[:, 0])  # both detectors see every group
        evidence_changes = self._evidence.update(means[:, 1])  # (no short-circuit)
        if level_changes or evidence_changes:
            self._changed = True
            self._refit_wanted = "drift"
            self.changes += len(level_changes) + len(evidence_changes)
            logger.info("drift: the %s changed; recalibrating", "input level" if level_changes else "evidence")

    def _lasting_change(self, alpha: float, ensemble=None) -> None:
        """Alarms that go on, or come too often to be chance, and scores that moved are a new normal: admit them,
        drop what precedes.

        Three signs of a change the calibration no longer fits:

        - an alarm running longer than ``confirm`` points, with pauses of at most ``margin``;
        - separate alarms (so merged) starting within ``every`` points of each other, more of them
          than ``alpha`` allows but with a chance below ``FREQUENT``, while the bulk of recent
          scores has moved above the models' calibration (:meth:`_bulk_moved`): a noisier regime
          alarms often, each time briefly, and would otherwise be learned only when the old
          regime has left the kept history (measured on the simulator, noise 2.5 times larger
          for good: 19-25 times the target from 300 points after the change, 2-3 times after
          8,000). Without the bulk's move, a cluster of anomalies was taken for a new normal and
          taught to calibration (simulator, 1,000,000 points: event recall 0.96 fell to 0.40);
        - the last ``RECENT`` points' scores above the calibration in use, in bulk and tail alike
          (:meth:`_scores_moved`; ``ensemble`` is the ensemble in use, ``None`` to skip this sign):
          a noisier regime does this within a few hundred points, long before its alarms are
          frequent enough to tell (measured as above: 5.6-7.2 times the target from 300 points
          after the change with the first two signs alone, 0.8-1.1 with this one).

        Marginal alarms count as well as confident ones: a pattern the models flag again and
        again, even marginally (a new hourly bump, flagged at each hour on NAB's
        cpu_utilization_asg_misconfiguration for 500 points), is the stream's own. Alarms
        labelled anomalies never count, and those already taken as a change are not taken again.
        """
        kept = self.kept
        flags = ((kept.flags | kept.alarms) & kept.usable & (kept.marks != ANOMALY)
                 & (kept.timestamps > self._accepted_until))
        # one alarm: flags with pauses of at most `margin` points between them (in stream positions: a thinned
        # history skips points), as (first kept point, last + 1)
        positions, flagged = kept.positions, np.flatnonzero(flags)
        groups = np.split(flagged, np.flatnonzero(np.diff(positions[flagged]) - 1 > self.margin) + 1)
        alarms = [(int(group[0]), int(group[-1]) + 1) for group in groups if len(group)]
        lasting = [(start, end) for start, end in alarms if positions[end - 1] - positions[start] + 1 > self.confirm]
        if lasting:
            start, end = lasting[0]
            logger.info("drift: an alarm lasted %d points: taken as the new normal",
                        positions[end - 1] - positions[start] + 1)
        elif (start := self._frequent(alarms, positions, alpha)) is not None and self._bulk_moved():
            end = alarms[-1][1]
            logger.info("drift: alarms came too often over %d points: taken as the new normal",
                        positions[end - 1] - positions[start] + 1)
        elif ensemble is not None and (start := self._scores_moved(ensemble)) is not None:
            end = len(kept)
            logger.info("drift: the last %d points' scores lie above the calibration: taken as the new normal",
                        end - start)
        else:
            return
        # flags under a calibration the stream has left say little: the new regime's anomalies are kept out by
        # the anchor, rescaled to it (see _anchor)
        kept.set("flags", slice(start, end), False)
        self._accepted_until = float(kept.timestamps[end - 1])
        self._changed_from = float(kept.timestamps[start])
        if not self._anchor_off:  # the first change since these models: what precedes is the old regime
            kept.drop_before(start)
        self._anchor_off = True
        self._admitted_at_refit = 0
        self._changed = True
        self._refit_wanted = "lasting change"
        self.changes += 1

    def _scores_moved(self, ensemble) -> int | None:
        """Return where the last ``RECENT`` scored points start when their scores have moved above the calibration
        in use, else ``None``.

        Moved: for some detector, more of those points than chance allows (below ``MOVED`` each) score above
        its calibration sample's 65th percentile (the bulk) and above its 99th (the tail). A noisier regime
        moves both within a few hundred points; a calibration that fits puts 35% and 1% there. Points
        confidently anomalous or labelled anomalies are left out, so a cluster of anomalies is not a new
        normal. (Measured: ``MOVED`` 1e-3 took slow wanderings of NAB's series for changes, NAB 47.3 -> 39.2;
        1e-4 and 1e-6 did not, and 1e-4 also catches 1.5 times the noise at the first test.)"""
        kept = self.kept
        lately = slice(len(kept) - kept.since(4 * RECENT), None)
        quiet = (kept.usable[lately] & ~kept.flags[lately] & (kept.marks[lately] != ANOMALY)
                 & (kept.timestamps[lately] > self._accepted_until))
        rows = np.flatnonzero(quiet)
        weights = kept.weights[lately][rows]
        last = np.cumsum(weights[::-1])[::-1] <= RECENT  # the last RECENT quiet points (a thinned one: by weight)
        rows, weights = rows[last], weights[last]
        raw = kept.raw[lately][rows]
        if weights.sum() < RECENT or not np.isfinite(raw).all():
            return None
        for i, name in enumerate(ensemble.names):
            bulk, tail = np.quantile(double(ensemble.calibrators_[name].sorted_), [BULK, 1 - TAIL])
            if (weights[raw[:, i] > bulk].sum() >= too_many(RECENT, 1 - BULK, MOVED)
                    and weights[raw[:, i] > tail].sum() >= too_many(RECENT, TAIL, MOVED)):
                return len(kept) - len(quiet) + int(rows[0])
        return None

    def _frequent(self, alarms: list[tuple[int, int]], positions: np.ndarray, alpha: float) -> int | None:
        """Return where the first stretch of ``every`` points with too many separate ``alarms`` (runs of kept
        points, at stream ``positions``) starts, or ``None``.

        Too many: at least the count that ``every`` points alarming independently at rate
        ``alpha`` reach with a chance below ``FREQUENT``."""
        span = self.settings.every
        need = too_many(span, alpha)
        if len(alarms) < need:
            return None
        starts = np.array([start for start, _ in alarms], dtype=np.int64)
        at = positions[starts]
        within = np.searchsorted(at, at + span, side="left") - np.arange(len(starts))
        crowded = np.flatnonzero(within >= need)
        return int(starts[crowded[0]]) if len(crowded) else None


@functools.lru_cache(maxsize=64)
def too_many(span: int, alpha: float, chance: float = FREQUENT) -> int:
    """Return the fewest alarms in ``span`` points that a rate of ``alpha`` gives with a chance below ``chance``."""
    return int(binom.isf(chance, span, alpha)) + 1


def exactly_single(seconds: np.ndarray) -> np.ndarray | None:
    """Return ``seconds`` as float32 when that holds every one exactly (NaN as NaN), else ``None``."""
    narrow = seconds.astype(np.float32)
    return narrow if ((narrow == seconds) | np.isnan(seconds)).all() else None


def double(sample: np.ndarray) -> np.ndarray:
    """Return a calibration sample in double precision (one lent by a single-precision table is widened exactly):
    quantiles interpolate in their array's precision."""
    return np.asarray(sample, dtype=np.float64)


def sampled_offset(stretch: np.ndarray, thin: int) -> np.ndarray:
    """Return ``(n,)`` the offset within each stretch of ``thin`` stream positions (``stretch``: position // thin)
    whose point a thinned history samples: a multiplicative hash, the same in every run."""
    return ((stretch.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32) >> np.uint64(16)).astype(
        np.int64) % thin


def recalibrated(ensemble, raw: np.ndarray, original=None, taught: np.ndarray | None = None,
                 pooled: bool = True, scale: np.ndarray | None = None):
    """Return a copy of ``ensemble`` calibrated on ``raw`` ``(n, k)`` scores of normal points, in time order.

    The first third, pooled with the scores each detector was calibrated on in training
    (``original``: the trained ensemble), calibrates each detector; the rest calibrates their
    combination. Both samples are normal scores. Pooling them keeps one unusual recent
    stretch from collapsing a threshold (measured on NAB's noise-free series: thresholds
    fitted on a few hundred near-identical scores alarmed on float-level differences),
    while the recent sample soon outweighs a short training head. The combination's
    calibration sample is pooled with the trained one too: on its own, each recalibration
    moved the threshold by chance, and on a stream without drift the events right at the
    threshold were found by the trained ensemble and missed after adapting (1 in 89). ``pooled=False``
    (after a lasting change): the recent scores alone, since the trained ones describe the regime that
    ended (measured on the simulator, noise 2.5 times larger for good: pooled, 1.7-2.5 times the target
    8,000 points after the change; alone, 0.5-1.0). ``scale`` ``(k,)``: each detector's trained sample is
    multiplied by this before it is pooled (the models' calibration rescaled to a new regime: see
    ``Adapter._rescaled``). ``taught``: ``(m, k)`` scores of points labelled false alarms (see
    :func:`~anomaly.model.calibration.taught_calibrator`).
    """
    cut = len(raw) // 3
    original = original or ensemble
    taught = np.empty((0, raw.shape[1])) if taught is None else taught
    new = copy.copy(ensemble)

    def trained(calibrator, i: int | None = None) -> np.ndarray:  # the sample a calibrator of the trained models
        # learned from (detector i's: times its scale)
        # rescaled, rounded to single precision as every raw score is (see calibration.single_precision)
        sample = calibrator.sorted_ if pooled else np.empty(0)
        return single_precision(sample * scale[i]) if scale is not None and i is not None else sample

    new.calibrators_ = {
        name: taught_calibrator(np.concatenate([trained(original.calibrators_[name], i), raw[:cut, i]]),
                                taught[:, i], ensemble.alpha,
                                unit_tail=unit_tail(ensemble.detectors[name])).thinned(THINNED)
        for i, name in enumerate(ensemble.names)}
    p_detectors = new.detector_p_values(raw[cut:])
    statistic = new.statistic(p_detectors[plausibly_normal(p_detectors)])
    statistic = np.concatenate([trained(original.combined_), statistic])  # pooled too, for the same reason
    taught_statistic = (new.statistic(new.detector_p_values(taught))
                        if len(taught) and len(statistic) >= MIN_EMPIRICAL else np.empty(0))
    new.combined_ = taught_calibrator(statistic, taught_statistic, ensemble.alpha).thinned(THINNED)
    return new
