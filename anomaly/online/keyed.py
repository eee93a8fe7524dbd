"""Many series in one stream: one runner per series key, made on first sight, evicted when idle.

Points of different series interleave freely in a :class:`~anomaly.io.records.Chunk` whose
``series`` column names each point's key. :class:`KeyedRunners` splits every chunk by key
(keeping each series' order) and hands each part to that series' own
:class:`~anomaly.online.runner.Runner` and :class:`~anomaly.io.alarms.AlarmFilter`: order, duplicate,
gap and future checks, warm-up, adaptation and incidents are per series, so a bad point in
one series never touches another. A series that has sent nothing for ``idle_after`` seconds
is snapshotted into ``state_dir`` (:meth:`~anomaly.online.runner.Runner.snapshot`) and let go, or
dropped when there is no folder; when it comes back it is restored and goes on exactly
where it was. Memory is bounded by the number of active series.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io.alarms import AlarmEvent, AlarmFilter
from ..io.records import Chunk, DecisionBlock, Rejected
from . import state
from .heap import HeapKeeper
from .lane import Lane
from .runner import Counts, Runner
from .ticks import TickScorer


@dataclass
class SeriesResult:
    """What one series' part of a chunk gave: its decisions, its rejected lines, its incident events.

    ``series`` is ``None`` for the points a tick scored together (:mod:`anomaly.online.ticks`): one
    point of each of many series, ``block.series`` naming each point's."""

    series: str | None
    block: DecisionBlock
    rejected: list[Rejected]
    events: list[AlarmEvent] = field(default_factory=list)


@dataclass
class _Active:
    runner: Runner
    alarm: AlarmFilter
    last_seen: float
    key: str = ""
    placed: tuple | None = None  # (ensemble, group, slot) of the runner's models among the tick groups
    lane: Lane | None = None  # the lane holding this series' hot state between ticks (see anomaly.online.lane)
    lane_row: int = 0


class _Tick:
    """The parked series (their :class:`_Active`) of one lane whose points of one chunk a tick may score
    together, with each one's row of the chunk and its order among the chunk's series."""

    def __init__(self):
        self.members: list[_Active] = []
        self.rows: list[int] = []
        self.order: list[int] = []
        self.latest = np.empty(0, dtype=np.int64)  # each point's grid position, once checked


def state_name(series: str) -> str:
    """Return the file name a series' state is kept under (its key hashed: any text is a safe key)."""
    return hashlib.sha256(series.encode()).hexdigest()[:32] + ".state"


class KeyedRunners:
    """One runner and alarm filter per series key (see the module).

    ``make_runner(key)`` and ``make_alarm(key)`` build a new series' runner and filter;
    ``make_runner`` returns ``None`` for a series it cannot score (one a many-series run was
    not trained on): its points are rejected, saying so.
    ``idle_after``: seconds without a point before a series is evicted (``None``: never).
    ``state_dir``: where evicted series are kept (``None``: they are dropped and start
    afresh, warm-up included, when they come back). ``clock``: seconds, monotonic.
    ``ticks``: score the series that bring one point each in a chunk together (:mod:`anomaly.online.ticks`;
    ``False``: each through its own runner, the same decisions, slower).
    """

    def __init__(self, make_runner: Callable[[str], Runner], make_alarm: Callable[[str], AlarmFilter] = None,
                 idle_after: float | None = None, state_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic, ticks: bool = True):
        self._make_runner = make_runner
        self._ticks = TickScorer() if ticks else None  # one point of many series: scored together
        self._make_alarm = make_alarm or (lambda key: AlarmFilter(series=key))
        self.idle_after = idle_after
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._clock = clock
        self.active: dict[str, _Active] = {}
        self.evicted = 0  # series let go for being idle (saved or dropped)
        self.restored = 0  # series brought back from a saved state
        self.unclaimed = Counts()  # lines rejected before any series could claim them (unparsable)
        self._gone = Counts()  # counts of the series let go (taken back out when one is restored)
        self._gone_incidents = 0
        self._seen: set[str] = set()
        self.unknown: set[str] = set()  # series whose points were rejected: no runner could be made for them
        self.carried = Counts()  # what series restored from an earlier run's state had counted there
        self.carried_incidents = 0
        self._lanes: dict[tuple, Lane] = {}  # (group of models, wall clock) -> its parked series
        # series recalibrate and thin their histories again and again, freeing arrays between others: the freed
        # pages go back to the system now and then, or they stay resident (see anomaly.online.heap)
        self.heap = HeapKeeper(clock=clock)

    def process(self, chunk: Chunk) -> list[SeriesResult]:
        """Score a chunk of interleaved series; return one result per series in it, in order of first appearance
        (the points ticks scored together last).

        Points without a ``series`` column belong to the series ``""``. Lines that could not
        be parsed (``chunk.rejected``) carry no trustworthy key: they are returned with series ``""``.
        """
        now = self._clock()
        self.evict_idle(now)  # before: a series back after a long silence comes back from its saved state
        ticks: dict[Lane, _Tick] = {}
        alone = []  # (order, key, rows, active or None): series scored by their own runner
        timestamps = values = None
        for order, (key, rows) in enumerate(chunk.series_rows().items()):
            active = self.active.get(key) or self._series(key, now)
            if active is not None:
                active.last_seen = now
                if self._ticks is not None and type(rows) is int:  # one point of this series
                    lane = active.lane
                    if lane is None:
                        if timestamps is None:  # Python floats: a series not yet parked is checked in plain Python
                            timestamps, values = chunk.timestamps.tolist(), chunk.values.tolist()
                        if active.runner.ready_for_tick(timestamps[rows], values[rows]) is not None:
                            lane = self._park(active)
                    if lane is not None:
                        if (tick := ticks.get(lane)) is None:
                            tick = ticks[lane] = _Tick()
                        tick.members.append(active), tick.rows.append(rows), tick.order.append(order)
                        continue
            alone.append((order, key, rows, active))
        for lane, tick in ticks.items():  # a parked series whose point a tick cannot take goes alone
            missed = self._unready(lane, tick, chunk)
            if missed:
                alone = sorted(alone + missed, key=lambda one: one[0])
        results = [self._alone(chunk, key, rows, active) for _, key, rows, active in alone]
        for lane, tick in ticks.items():  # one per shape of models (one, for a run of many series)
            if tick.members:
                results.append(self._tick(chunk, lane, tick))
        if chunk.rejected:
            self._unscored(chunk.rejected)
            results.append(SeriesResult("", _empty_block(), list(chunk.rejected)))
        self.heap.tick(now)
        return results

    def _alone(self, chunk: Chunk, key: str, rows, active: _Active | None) -> SeriesResult:
        """Score one series' points of ``chunk`` (``rows``) through its own runner."""
        rows = [rows] if type(rows) is int else rows
        if active is None:
            part = chunk.take(np.array(rows).reshape(-1))
            self.unknown.add(key)
            rejected = [Rejected(part.raw_text(i), "unknown series: the run was not trained on it", int(position),
                                 key) for i, position in enumerate(part.positions)]
            self._unscored(rejected)
            return SeriesResult(key, _empty_block(), rejected)
        block, rejected = active.runner.process(chunk if len(rows) == len(chunk) else chunk.take(np.array(rows)))
        block.series = key
        return SeriesResult(key, block, [replace(r, series=key) for r in rejected], active.alarm.update(block))

    def _park(self, active: _Active) -> Lane:
        """Hand the hot state of ``active`` (ready for a tick) to the lane of its models' group; return the lane."""
        runner = active.runner
        if (placed := active.placed) is None or placed[0] is not runner.ensemble:
            placed = active.placed = (runner.ensemble, *self._ticks.place(runner.ensemble))
        group = placed[1]
        lane = self._lanes.get((group, runner._wall_clock))
        if lane is None:
            lane = self._lanes[group, runner._wall_clock] = Lane(group.window - 1, len(group.names),
                                                                 runner._wall_clock)
        lane.park(active, placed[2])
        return lane

    @staticmethod
    def _unready(lane: Lane, tick: _Tick, chunk: Chunk) -> list[tuple]:
        """Check the points of ``tick`` in one pass (their grid positions kept in ``tick.latest``); take those a
        tick cannot score out of it (their series land: see :mod:`anomaly.online.lane`) and return them as series
        to score alone."""
        rows = np.array(tick.rows)
        ok, tick.latest = lane.ready(np.array([active.lane_row for active in tick.members]),
                                     chunk.timestamps[rows], chunk.values[rows])
        if ok.all():
            return []
        missed = []
        for i in np.flatnonzero(~ok).tolist():
            active = tick.members[i]
            lane.land(active)
            missed.append((tick.order[i], active.key, tick.rows[i], active))
        keep = ok.tolist()
        for name in ("members", "rows", "order"):
            setattr(tick, name, [item for item, kept in zip(getattr(tick, name), keep) if kept])
        tick.latest = tick.latest[ok]
        return missed

    def _tick(self, chunk: Chunk, lane: Lane, tick: _Tick) -> SeriesResult:
        """Score together the points of ``tick``, whose series' models are of one shape and whose hot state
        ``lane`` holds (see :mod:`anomaly.online.ticks` and :mod:`anomaly.online.lane`)."""
        members = tick.members
        group = members[0].placed[1]
        group.tidy()  # (before any part is decided: it may move the calibrators' samples)
        rows, at = np.array(tick.rows), np.array([active.lane_row for active in members])
        timestamps, values, latest = chunk.timestamps[rows], chunk.values[rows], tick.latest
        slots, n, width = lane.slot[at], len(members), lane.width
        windows = np.empty((n, width + 1))
        windows[:, :width] = lane.tail[at]
        windows[:, width] = group.scaled(slots, values)
        positions = np.empty((n, width + 1), dtype=np.int64)
        positions[:, :width] = lane.tail_positions(at)
        positions[:, width] = latest
        looks, decided = [], []
        for part, d in group.decide_parts(slots, windows, positions):  # each part taken in while the next is decided
            shown = lane.records(at[part], group.warped(slots[part], values[part]), d, group.alpha)
            decided.append(shown)
            looks.append(part.start + lane.take(at[part], timestamps[part], values[part], latest[part],
                                                windows[part], positions[part], d, shown["is_anomaly"]))
        lane.settle()
        d = decided[0] if len(decided) == 1 else {key: np.concatenate([part[key] for part in decided])
                                                  for key in decided[0]}
        keys = [active.key for active in members]
        block = DecisionBlock(
            names=group.names, alpha=group.alpha, timestamps=timestamps, values=values,
            score=d["score"], p_value=d["p_value"], is_anomaly=d["is_anomaly"], p_detectors=d["p_detectors"],
            warmup=np.zeros(n, dtype=bool), expected=d["expected"], spread=d["spread"], positions=chunk.positions[rows],
            labels=None if chunk.labels is None else [chunk.labels[i] for i in rows.tolist()],
            kinds=None if chunk.kinds is None else [chunk.kinds[i] for i in rows.tolist()], raw=d["raw"], series=keys,
            record=d["record"])
        incidents = []
        for i in np.concatenate(looks).tolist():  # flagged, or an incident open: the alarm filter sees the point
            one = block.take(np.array([i]))
            one.series = keys[i]
            active = members[i]
            incidents += (lane.alarm_update(active.lane_row, one) if active.lane is lane
                          else active.alarm.update(one))
        return SeriesResult(None, block, [], incidents)

    def _unscored(self, rejected: list[Rejected]) -> None:
        """Count lines no series' runner took (unparsable, or of a series that cannot be scored)."""
        for line in rejected:
            self.unclaimed.add_reject(line.reason)

    def _series(self, key: str, now: float) -> _Active | None:
        if (active := self.active.get(key)) is not None:
            return active
        runner = self._make_runner(key)
        if runner is None:
            return None
        alarm = self._make_alarm(key)
        saved = state.read(self.state_dir, state_name(key)) if self.state_dir is not None else None
        if saved is not None:
            extra, _ = runner.restore(saved)
            if "alarms" in extra:
                alarm.load_state(*extra["alarms"])
            (self.state_dir / state_name(key)).unlink()  # in memory again: the file would go stale
            self.restored += 1
            if key in self._seen:  # let go by this stream: its counts were kept aside, now they are its own again
                self._gone = self._gone.since(runner.counts)
                self._gone_incidents -= alarm.count
            else:  # saved by an earlier run
                self.carried = self.carried.plus(runner.counts)
                self.carried_incidents += alarm.count
        self._seen.add(key)
        self.active[key] = active = _Active(runner, alarm, now, key)
        return active

    def evict_idle(self, now: float | None = None) -> list[str]:
        """Let go of the series idle for ``idle_after`` seconds or more (saved when there is a folder); return them."""
        if self.idle_after is None:
            return []
        now = self._clock() if now is None else now
        idle = [key for key, active in self.active.items() if now - active.last_seen >= self.idle_after]
        for key in idle:
            self._let_go(key)
        return idle

    def save_all(self) -> int:
        """Save every active series' state into ``state_dir`` (at a stop); return how many."""
        if self.state_dir is None:
            return 0
        for key, active in self.active.items():
            state.write(self.state_dir, self._snapshot(key, active), state_name(key))
        return len(self.active)

    def _let_go(self, key: str) -> None:
        active = self.active.pop(key)
        if self.state_dir is not None:
            state.write(self.state_dir, self._snapshot(key, active), state_name(key))
        active.runner.close()
        self._gone = self._gone.plus(active.runner.counts)
        self._gone_incidents += active.alarm.count
        self.evicted += 1

    @property
    def seen(self) -> int:
        """Series seen by this stream."""
        return len(self._seen)

    def runners(self) -> list[Runner]:
        """The active series' runners (each adapter up to date: see :meth:`Runner.flush`)."""
        for active in self.active.values():
            active.runner.flush()
        return [active.runner for active in self.active.values()]

    def counts(self) -> Counts:
        """Points, anomalies and rejects of every series this stream saw (those let go included)."""
        total = self._gone.plus(self.unclaimed)
        for active in self.active.values():
            total = total.plus(active.runner.counts)
        return total

    def incidents(self) -> int:
        """Incidents opened in every series this stream saw."""
        return self._gone_incidents + sum(active.alarm.count for active in self.active.values())

    def close_incidents(self) -> list[AlarmEvent]:
        """Close every open incident (the stream ends); return the events."""
        self._land_all()
        return [event for active in self.active.values() for event in active.alarm.close()]

    def _land_all(self) -> None:
        for lane in self._lanes.values():
            lane.land_all()

    @staticmethod
    def _snapshot(key: str, active: _Active) -> bytes:
        if active.lane is not None:  # its runner and alarm filter as they stand (see anomaly.online.lane)
            active.lane.land(active)
        return active.runner.snapshot({"alarms": active.alarm.state()}, {"series": key})

    def close(self) -> None:
        """Stop every runner (a refit under way is dropped)."""
        self._land_all()
        for active in self.active.values():
            active.runner.close()


def in_input_order(results: list[SeriesResult]) -> DecisionBlock | None:
    """Return the decisions of all series of one chunk as one block in input order, each point naming its
    series (``None`` when there are none)."""
    blocks = [result.block for result in results if len(result.block)]
    if not blocks:
        return None
    keys = [key for block in blocks
            for key in (block.series if isinstance(block.series, list) else [block.series] * len(block))]
    joined = DecisionBlock.concat(blocks)
    order = np.argsort(joined.positions, kind="stable")  # a gap's filled points keep their place before the next
    joined.series = keys
    return joined.take(order)


def of_series(result: SeriesResult, key: str) -> DecisionBlock | None:
    """Return the decisions ``result`` holds for series ``key``, or ``None`` when it holds none."""
    if result.series is not None:
        return result.block if result.series == key and len(result.block) else None
    rows = [i for i, series in enumerate(result.block.series) if series == key]
    return result.block.take(np.array(rows)) if rows else None


def _empty_block() -> DecisionBlock:
    """A block with no points (for lines that were rejected before any series could claim them)."""
    empty = np.empty(0)
    return DecisionBlock(names=[], alpha=0.0, timestamps=empty, values=empty, score=empty, p_value=empty,
                         is_anomaly=np.zeros(0, dtype=bool), p_detectors=np.empty((0, 0)),
                         warmup=np.zeros(0, dtype=bool), expected=empty, spread=empty,
                         positions=np.empty(0, dtype=np.int64))
