"""Many series in one stream: one runner per series key, made on first sight, evicted when idle.

Points of different series interleave freely in a :class:`~anomaly.records.Chunk` whose
``series`` column names each point's key. :class:`KeyedRunners` splits every chunk by key
(keeping each series' order) and hands each part to that series' own
:class:`~anomaly.runner.Runner` and :class:`~anomaly.alarms.AlarmFilter`: order, duplicate,
gap and future checks, warm-up, adaptation and incidents are per series, so a bad point in
one series never touches another. A series that has sent nothing for ``idle_after`` seconds
is snapshotted into ``state_dir`` (:meth:`~anomaly.runner.Runner.snapshot`) and let go, or
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

from . import state
from .alarms import AlarmEvent, AlarmFilter
from .records import Chunk, DecisionBlock, Rejected
from .runner import Counts, Runner


@dataclass
class SeriesResult:
    """What one series' part of a chunk gave: its decisions, its rejected lines, its incident events."""

    series: str
    block: DecisionBlock
    rejected: list[Rejected]
    events: list[AlarmEvent] = field(default_factory=list)


@dataclass
class _Active:
    runner: Runner
    alarm: AlarmFilter
    last_seen: float


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
    """

    def __init__(self, make_runner: Callable[[str], Runner], make_alarm: Callable[[str], AlarmFilter] = None,
                 idle_after: float | None = None, state_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._make_runner = make_runner
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
        results = []
        for key, part in chunk.by_series().items():
            active = self._series(key, now)
            if active is None:
                self.unknown.add(key)
                rejected = [Rejected(part.raw_text(i), "unknown series: the run was not trained on it", int(position),
                                     key) for i, position in enumerate(part.positions)]
                self._unscored(rejected)
                results.append(SeriesResult(key, _empty_block(), rejected))
                continue
            block, rejected = active.runner.process(part)
            block.series = key
            active.last_seen = now
            results.append(SeriesResult(key, block, [replace(r, series=key) for r in rejected],
                                        active.alarm.update(block)))
        if chunk.rejected:
            self._unscored(chunk.rejected)
            results.append(SeriesResult("", _empty_block(), list(chunk.rejected)))
        return results

    def _unscored(self, rejected: list[Rejected]) -> None:
        """Count lines no series' runner took (unparsable, or of a series that cannot be scored)."""
        for line in rejected:
            self.unclaimed.add_reject(line.reason.split(":")[0])

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
        self.active[key] = active = _Active(runner, alarm, now)
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
        """The active series' runners."""
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
    keys = [key for block in blocks for key in [block.series] * len(block)]
    joined = DecisionBlock.concat(blocks)
    order = np.argsort(joined.positions, kind="stable")  # a gap's filled points keep their place before the next
    joined.series = keys
    return joined.take(order)


def _empty_block() -> DecisionBlock:
    """A block with no points (for lines that were rejected before any series could claim them)."""
    empty = np.empty(0)
    return DecisionBlock(names=[], alpha=0.0, timestamps=empty, values=empty, score=empty, p_value=empty,
                         is_anomaly=np.zeros(0, dtype=bool), p_detectors=np.empty((0, 0)),
                         warmup=np.zeros(0, dtype=bool), expected=empty, spread=empty,
                         positions=np.empty(0, dtype=np.int64))
