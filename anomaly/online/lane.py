"""A lane: the hot online state of many series between ticks, as arrays.

A tick of many series (:mod:`anomaly.online.ticks`) scores one point of each series in one
vectorised pass. What each series must check and keep per point (the window tail, the last
timestamp and grid position, the counts, the points its adapter has yet to see, whether its
alarm filter must look) was held in each :class:`~anomaly.online.runner.Runner`, and reading and
writing it cost about 10 us of Python per series and tick: half a tick of 10,000 series.

A series that a tick took in is *parked* in the lane of its models' group: from then on the
lane's rows are its state, and a tick checks and takes in all parked series' points with
array operations. Anything else that touches the series (a point a tick cannot take, a
snapshot, feedback, its counts) first *lands* it: the lane writes its row back into the
runner and the alarm filter and lets go of it, and the runner goes on from there. The
decisions are those of the series' own runner, bit for bit (``tests/test_ticks.py``).
"""

from __future__ import annotations

import functools
from array import array

import numpy as np

from ..model.novelty import record_p_rows, take_records

OFFSET_SPAN = 2 ** 15  # a parked window's grid positions lie fewer than this many steps before its last point
DEFER_MAX = 64  # points ticks took in that an adapter may have yet to see (see Runner.flush)
NO_LIMIT = np.iinfo(np.int64).max
COLUMNS = {  # a lane's arrays, one row per parked series: name -> (dtype, shape beyond the row)
    "tail": (np.float64, "width"),  # the scaled window before the next point
    # its grid positions less last_position (Runner.ready_for_tick lets in only windows within OFFSET_SPAN grid
    # steps: memory of many series, a quarter of int64's)
    "tail_offsets": (np.int16, "width"),
    "last_timestamp": (np.float64, ()),
    "last_position": (np.int64, ()),  # the gap handler's last point: grid position and value
    "last_value": (np.float64, ()),
    "origin": (np.float64, ()),  # the series' time grid
    "interval": (np.float64, ()),
    "horizon": (np.float64, ()),  # seconds past the last point and the clock that are the future (inf: none)
    "limit": (np.int64, ()),  # a point may come while the runner's point count + 1 stays below this
    "points": (np.int64, ()),  # the runner's point count when parked, and those added since
    "added": (np.int64, ()),
    "anomalies": (np.int64, ()),  # flags added since parked
    "slot": (np.int64, ()),  # the models' slot in their group (calibrators and numbers)
    "adapts": (bool, ()),
    # points the adapter has yet to see (Runner.observe_ticked rows): timestamp, value and p-value; the flag; the raw
    # scores, in single precision as each is made (memory of many series: 41 bytes a point, not 64)
    "deferred": (np.float64, "deferred"),
    "deferred_flags": (bool, "deferred_flags"),
    "deferred_raw": (np.float32, "deferred_raw"),
    "pending": (np.int64, ()),  # how many
    "quiet": (np.int64, ()),  # unflagged points the alarm filter has yet to take in (no incident open)
    "open": (bool, ()),  # an incident is open: the filter sees every point
    # the range of values seen, how many, and the models' typical step (see anomaly.model.novelty)
    "low": (np.float64, ()),
    "high": (np.float64, ()),
    "seen": (np.int64, ()),
    "step": (np.float64, ()),
}


class Lane:
    """The parked series of one group of models (one shape) and one wall clock; see the module."""

    def __init__(self, width: int, k: int, clock):
        self.width, self.k, self.clock = width, k, clock
        self.members: list = []  # the parked series (keyed's _Active), by row
        self.unsettled: list = []  # members whose models changed during a tick: to land once it is over
        self._columns: dict[str, np.ndarray] = {}
        self._allocate(16)

    def _shape(self, extra) -> tuple:
        return {"width": (self.width,), "deferred": (DEFER_MAX, 3), "deferred_flags": (DEFER_MAX,),
                "deferred_raw": (DEFER_MAX, self.k)}.get(extra, extra)

    def _allocate(self, rows: int) -> None:
        grown = {name: np.zeros((rows, *self._shape(extra)), dtype=dtype)
                 for name, (dtype, extra) in COLUMNS.items()}
        for name, column in self._columns.items():
            grown[name][:len(self.members)] = column[:len(self.members)]
        self._columns = grown
        self.__dict__.update(grown)  # each column is an attribute: lane.tail, lane.points, ...

    def __len__(self) -> int:
        return len(self.members)

    def park(self, member, slot: int) -> int:
        """Take in ``member``'s runner state (its runner just passed ``ready_for_tick``); return its row."""
        runner = member.runner
        runner.flush()  # (nothing pending, normally): the lane starts with an empty queue
        row = len(self.members)
        if row == len(self.points):
            self._allocate(row + row // 4)  # (memory of many series: a quarter of a lane's rows spare at most)
        self.members.append(member)
        member.lane_row = row
        grid, (position, value) = runner.ensemble.grid, runner._gaps._last
        self.tail[row], self.tail_offsets[row] = runner._scaled, runner._positions - position
        runner._scaled = runner._positions = None  # the lane's row is the tail now (no copy held twice)
        self.last_timestamp[row], self.last_position[row], self.last_value[row] = \
            runner._last_timestamp, position, value
        self.origin[row], self.interval[row] = grid.origin, grid.interval
        self.horizon[row] = np.inf if runner.future_horizon is None else runner.future_horizon
        self.adapts[row] = runner.adapter is not None
        self.limit[row] = runner._boundary if runner.adapter is not None else NO_LIMIT
        self.points[row], self.added[row], self.anomalies[row] = runner.counts.points, 0, 0
        self.slot[row], self.pending[row], self.quiet[row] = slot, 0, 0
        self.open[row] = member.alarm.open is not None
        self.low[row], self.high[row], self.seen[row], self.step[row] = \
            runner._low, runner._high, runner._seen, runner._step
        member.lane = self
        runner._land = functools.partial(self.land, member)
        return row

    def tail_positions(self, rows: np.ndarray) -> np.ndarray:
        """Return ``(len(rows), width)`` the grid positions of the windows before each row's next point."""
        return self.tail_offsets[rows].astype(np.int64) + self.last_position[rows, None]

    def ready(self, rows: np.ndarray, timestamps: np.ndarray, values: np.ndarray):
        """Return ``(ok, positions)``: which parked ``rows`` may take their next point in a tick (as
        ``Runner.ready_for_tick``: finite, in order, not in the future, the next grid step, not where the
        adapter acts) and each point's grid position."""
        with np.errstate(invalid="ignore"):
            positions = np.rint((timestamps - self.origin[rows]) / self.interval[rows])
        ok = (np.isfinite(values) & np.isfinite(timestamps) & (timestamps > self.last_timestamp[rows])
              & (np.abs(positions) < 2.0 ** 62))  # (a position beyond int64 is no next grid step)
        positions = np.where(ok, positions, 0).astype(np.int64)
        ok &= (positions == self.last_position[rows] + 1) & (self.points[rows] + self.added[rows] + 1 < self.limit[rows])
        horizon = self.horizon[rows]
        if np.isfinite(horizon).any():
            ok &= ~(timestamps > np.maximum(self.last_timestamp[rows], self.clock()) + horizon)
        return ok, positions

    def records(self, rows: np.ndarray, values: np.ndarray, decisions: dict, alpha: float) -> dict:
        """Take each row's new point into its range of values seen; return a tick's ``decisions`` for ``rows``
        with the records' p-values where lower and ``record`` marking them (as ``Runner._records``;
        ``decisions`` stay as they are: the adapter sees the models' own)."""
        record_p = record_p_rows(values, self.low[rows], self.high[rows], self.seen[rows], self.step[rows])
        self.low[rows], self.high[rows] = np.minimum(self.low[rows], values), np.maximum(self.high[rows], values)
        self.seen[rows] += 1
        shown = {**decisions, **{key: decisions[key].copy() for key in ("p_value", "score", "is_anomaly")}}
        shown["record"] = take_records(shown["p_value"], shown["score"], shown["is_anomaly"], record_p, alpha)
        return shown

    def take(self, rows: np.ndarray, timestamps: np.ndarray, values: np.ndarray, positions: np.ndarray,
             windows: np.ndarray, window_positions: np.ndarray, decisions: dict, flags: np.ndarray) -> np.ndarray:
        """Take in the points a tick decided for ``rows`` (each row once): ``windows`` and ``window_positions``
        ``(n, width + 1)`` end with them; ``decisions``: the models' (what the adapter sees), ``flags``: the
        decisions shown (records included, see :meth:`records`). Returns the indices (into ``rows``) whose alarm
        filter must see its point: flagged, or an incident open."""
        self.tail[rows], self.tail_offsets[rows] = windows[:, 1:], window_positions[:, 1:] - positions[:, None]
        self.last_timestamp[rows], self.last_position[rows], self.last_value[rows] = timestamps, positions, values
        self.added[rows] += 1
        self.anomalies[rows] += flags
        adapting = self.adapts[rows]
        if adapting.any():
            at = rows[adapting]
            pending = self.pending[at]
            self.deferred[at, pending, 0], self.deferred[at, pending, 1] = timestamps[adapting], values[adapting]
            self.deferred[at, pending, 2] = decisions["p_value"][adapting]
            self.deferred_flags[at, pending] = decisions["is_anomaly"][adapting]
            self.deferred_raw[at, pending] = decisions["raw"][adapting]
            self.pending[at] = pending + 1
            for row in at[pending + 1 >= DEFER_MAX].tolist():
                self._observe(row)
        look = flags | self.open[rows]
        self.quiet[rows[~look]] += 1
        return np.flatnonzero(look)

    def alarm_update(self, row: int, block) -> list:
        """Let the alarm filter of ``row`` see its point (``block`` of one): the quiet points before it first."""
        alarm = self.members[row].alarm
        alarm.quiet_many(int(self.quiet[row]))
        self.quiet[row] = 0
        events = alarm.update(block)
        self.open[row] = alarm.open is not None
        return events

    def _observe(self, row: int) -> None:
        """The adapter of ``row`` sees its pending points (as ``Runner.flush`` after ``DEFER_MAX`` of them)."""
        member = self.members[row]
        runner = member.runner
        ensemble = runner.ensemble
        runner.observe_ticked(self._pending_rows(row))
        self.pending[row] = 0
        if runner.ensemble is not ensemble:  # (the adapter acts only at its boundaries, which no tick takes)
            self.unsettled.append(member)  # landed after the tick: its rows stay where the tick found them

    def _pending_rows(self, row: int) -> np.ndarray:
        """Return ``(pending, 4 + k)`` the points ``row``'s adapter has yet to see, as ``Runner.observe_ticked``
        takes them."""
        n = self.pending[row]
        return np.column_stack([self.deferred[row, :n], self.deferred_flags[row, :n], self.deferred_raw[row, :n]])

    def settle(self) -> None:
        """Land the series whose models changed during the tick just over (see :meth:`_observe`)."""
        while self.unsettled:
            self.land(self.unsettled.pop())

    def land(self, member) -> None:
        """Give ``member``'s state back to its runner and alarm filter, and let go of it."""
        row, runner = member.lane_row, member.runner
        runner._land = None
        member.lane = None
        runner._scaled, runner._positions = self.tail[row].copy(), self.tail_positions(np.array([row]))[0]
        runner._last_timestamp = float(self.last_timestamp[row])
        runner._gaps._last = (int(self.last_position[row]), float(self.last_value[row]))
        runner._low, runner._high = float(self.low[row]), float(self.high[row])
        runner._seen, runner._step = int(self.seen[row]), float(self.step[row])
        runner.counts.points += int(self.added[row])
        runner.counts.anomalies += int(self.anomalies[row])
        if self.pending[row]:
            runner._deferred = array("d", self._pending_rows(row).tobytes())
        member.alarm.quiet_many(int(self.quiet[row]))
        last = len(self.members) - 1
        if row != last:  # the last row takes the freed one
            for column in self._columns.values():
                column[row] = column[last]
            moved = self.members[row] = self.members[last]
            moved.lane_row = row
        self.members.pop()

    def land_all(self) -> None:
        """Give every parked series back to its runner."""
        while self.members:
            self.land(self.members[-1])
