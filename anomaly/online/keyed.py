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
    row: int = 0  # this chunk's row of the series' point, and its grid position, when a tick scores it
    position: int = 0


class _Tick(list):
    """The series (their :class:`_Active`) whose points of one chunk a tick scores together; each holds its
    row and grid position (no object per point: the garbage collector traces every one that outlives its
    youngest generation)."""


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

    def process(self, chunk: Chunk) -> list[SeriesResult]:
        """Score a chunk of interleaved series; return one result per series in it, in order of first appearance.

        Points without a ``series`` column belong to the series ``""``. Lines that could not
        be parsed (``chunk.rejected``) carry no trustworthy key: they are returned with series ``""``.
        """
        now = self._clock()
        self.evict_idle(now)  # before: a series back after a long silence comes back from its saved state
        results, groups = [], {}
        ticks, known = self._ticks, self.active
        timestamps = values = None
        for key, rows in chunk.series_rows().items():
            active = known.get(key) or self._series(key, now)
            if active is None:
                part = chunk.take(np.array(rows).reshape(-1))
                self.unknown.add(key)
                rejected = [Rejected(part.raw_text(i), "unknown series: the run was not trained on it", int(position),
                                     key) for i, position in enumerate(part.positions)]
                self._unscored(rejected)
                results.append(SeriesResult(key, _empty_block(), rejected))
                continue
            active.last_seen = now
            if ticks is not None and type(rows) is int:  # one point of this series
                if timestamps is None:  # Python floats: a tick checks each series' point in plain Python
                    timestamps, values = chunk.timestamps.tolist(), chunk.values.tolist()
                i = rows
                runner = active.runner
                if (position := runner.ready_for_tick(timestamps[i], values[i])) is not None:
                    if (placed := active.placed) is None or placed[0] is not runner.ensemble:
                        placed = active.placed = (runner.ensemble, *ticks.place(runner.ensemble))
                    if (tick := groups.get(placed[1])) is None:
                        tick = groups[placed[1]] = _Tick()
                    active.row, active.position = i, position
                    tick.append(active)
                    continue
            rows = [rows] if type(rows) is int else rows
            block, rejected = active.runner.process(chunk if len(rows) == len(chunk) else chunk.take(np.array(rows)))
            block.series = key
            results.append(SeriesResult(key, block, [replace(r, series=key) for r in rejected],
                                        active.alarm.update(block)))
        for group, tick in groups.items():  # one per shape of models (one, for a run of many series)
            results.append(self._tick(chunk, group, tick, timestamps, values))
        if chunk.rejected:
            self._unscored(chunk.rejected)
            results.append(SeriesResult("", _empty_block(), list(chunk.rejected)))
        return results

    @staticmethod
    def _tick(chunk: Chunk, group, tick: _Tick, timestamps: list[float], values: list[float]) -> SeriesResult:
        """Score together the points of ``tick``, whose series' models are of one shape (``group``; see
        :mod:`anomaly.online.ticks`)."""
        runners = [active.runner for active in tick]
        keys, rows, latest = [active.key for active in tick], [active.row for active in tick], \
            [active.position for active in tick]
        rows, slots, n = np.array(rows), np.array([active.placed[2] for active in tick]), len(tick)
        width = group.window - 1
        windows = np.empty((n, width + 1))
        windows[:, :width] = np.concatenate([runner._scaled for runner in runners]).reshape(n, width)
        windows[:, width] = group.scaled(slots, chunk.values[rows])
        positions = np.empty((n, width + 1), dtype=np.int64)
        positions[:, :width] = np.concatenate([runner._positions for runner in runners]).reshape(n, width)
        positions[:, width] = latest
        events, decided, k = [], [], len(group.names)
        for part, d in group.decide_parts(slots, windows, positions):  # each part taken in while the next is decided
            decided.append(d)
            raw = d["raw"].ravel().tolist()
            tails = zip(map(np.ndarray.copy, windows[part, 1:]), map(np.ndarray.copy, positions[part, 1:]))
            for i, (active, runner, (scaled, kept), p_value, flag) in enumerate(zip(
                    tick[part], runners[part], tails, d["p_value"].tolist(), d["is_anomaly"].tolist())):
                row = active.row
                runner.tick_scored(timestamps[row], values[row], active.position, scaled, kept, p_value, flag,
                                   raw[k * i:k * i + k])
                if flag or not active.alarm.quiet():  # an incident opens, goes on or closes: the filter sees it
                    events.append((part.start + i, active))
        d = decided[0] if len(decided) == 1 else {key: np.concatenate([part[key] for part in decided])
                                                  for key in decided[0]}
        block = DecisionBlock(
            names=group.names, alpha=group.alpha, timestamps=chunk.timestamps[rows], values=chunk.values[rows],
            score=d["score"], p_value=d["p_value"], is_anomaly=d["is_anomaly"], p_detectors=d["p_detectors"],
            warmup=np.zeros(n, dtype=bool), expected=d["expected"], spread=d["spread"], positions=chunk.positions[rows],
            labels=None if chunk.labels is None else [chunk.labels[i] for i in rows.tolist()],
            kinds=None if chunk.kinds is None else [chunk.kinds[i] for i in rows.tolist()], raw=d["raw"], series=keys)
        incidents = []
        for i, active in events:
            one = block.take(np.array([i]))
            one.series = keys[i]
            incidents += active.alarm.update(one)
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
        return [event for active in self.active.values() for event in active.alarm.close()]

    @staticmethod
    def _snapshot(key: str, active: _Active) -> bytes:
        return active.runner.snapshot({"alarms": active.alarm.state()}, {"series": key})

    def close(self) -> None:
        """Stop every runner (a refit under way is dropped)."""
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
