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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import state
from .alarms import AlarmEvent, AlarmFilter
from .records import Chunk, DecisionBlock, Rejected
from .runner import Runner


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

    ``make_runner(key)`` and ``make_alarm(key)`` build a new series' runner and filter.
    ``idle_after``: seconds without a point before a series is evicted (``None``: never).
    ``state_dir``: where evicted series are kept (``None``: they are dropped and start
    afresh, warm-up included, when they come back). ``clock``: seconds, monotonic.
    """

    def __init__(self, make_runner: Callable[[str], Runner], make_alarm: Callable[[str], AlarmFilter] = None,
                 idle_after: float | None = None, state_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._make_runner = make_runner
        self._make_alarm = make_alarm or (lambda key: AlarmFilter())
        self.idle_after = idle_after
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._clock = clock
        self.active: dict[str, _Active] = {}
        self.evicted = 0  # series let go for being idle (saved or dropped)
        self.restored = 0  # series brought back from a saved state
        self.unclaimed = 0  # lines rejected before any series could claim them (unparsable)

    def process(self, chunk: Chunk) -> list[SeriesResult]:
        """Score a chunk of interleaved series; return one result per series in it, in order of first appearance.

        Points without a ``series`` column belong to the series ``""``. Lines that could not
        be parsed (``chunk.rejected``) carry no trustworthy key: they are returned with series ``""``.
        """
        now = self._clock()
        self.evict_idle(now)  # before: a series back after a long silence comes back from its saved state
        keys = np.asarray(chunk.series if chunk.series is not None else [""] * len(chunk), dtype=object)
        order = list(dict.fromkeys(keys.tolist()))
        results = []
        for key in order:
            part = chunk.take(keys == key)
            active = self._series(key, now)
            block, rejected = active.runner.process(part)
            active.last_seen = now
            results.append(SeriesResult(key, block, rejected, active.alarm.update(block)))
        if chunk.rejected:
            self.unclaimed += len(chunk.rejected)
            results.append(SeriesResult("", _empty_block(), list(chunk.rejected)))
        return results

    def _series(self, key: str, now: float) -> _Active:
        if (active := self.active.get(key)) is not None:
            return active
        runner, alarm = self._make_runner(key), self._make_alarm(key)
        saved = state.read(self.state_dir, state_name(key)) if self.state_dir is not None else None
        if saved is not None:
            extra, _ = runner.restore(saved)
            if "alarms" in extra:
                alarm.load_state(*extra["alarms"])
            (self.state_dir / state_name(key)).unlink()  # in memory again: the file would go stale
            self.restored += 1
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
        self.evicted += 1

    @staticmethod
    def _snapshot(key: str, active: _Active) -> bytes:
        return active.runner.snapshot({"alarms": active.alarm.state()}, {"series": key})

    def close(self) -> None:
        """Stop every runner (a refit under way is dropped)."""
        for active in self.active.values():
            active.runner.close()


def _empty_block() -> DecisionBlock:
    """A block with no points (for lines that were rejected before any series could claim them)."""
    empty = np.empty(0)
    return DecisionBlock(names=[], alpha=0.0, timestamps=empty, values=empty, score=empty, p_value=empty,
                         is_anomaly=np.zeros(0, dtype=bool), p_detectors=np.empty((0, 0)),
                         warmup=np.zeros(0, dtype=bool), expected=empty, spread=empty,
                         positions=np.empty(0, dtype=np.int64))
