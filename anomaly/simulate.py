"""Labelled synthetic metric streams: trend, daily and weekly cycles, correlated noise,
injected anomalies of six kinds, and optional concept drift (which is *not* an anomaly).

That is the ``smooth`` family; ``SimulatorConfig.family`` picks another kind of metric
(bursty, counts, heavy-tailed, steps, bounded: :mod:`anomaly.families`), each with the
anomalies that are anomalies for it.

>>> series = simulate(1000, seed=1, anomalies=True)
>>> series.values.shape, series.labels.dtype
((1000,), dtype('bool'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .config import SimulatorConfig
from .families import FAMILY_CLASSES, check_family

ANOMALY_KINDS = ("spike", "dip", "level_shift", "variance_burst", "flatline", "contextual")
DRIFT_KINDS = ("sudden_drift", "gradual_drift")
START_EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z: simulated time starts here


@dataclass(frozen=True)
class Event:
    """One injected anomaly or drift: ``length`` points starting at index ``start``."""

    start: int
    length: int
    kind: str
    magnitude: float

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class Point:
    """One streamed observation. ``timestamp`` is in epoch seconds."""

    timestamp: float
    value: float
    label: bool | None = None
    kind: str = ""
    series: str | None = None  # the series it belongs to (None: the stream's only one)


@dataclass(frozen=True)
class Series:
    """A block of simulated points: arrays of equal length plus the events behind them."""

    timestamps: np.ndarray  # (n,) float64 epoch seconds
    values: np.ndarray  # (n,) float64
    labels: np.ndarray  # (n,) bool, True inside an injected anomaly
    kinds: np.ndarray  # (n,) str, anomaly kind or ""
    events: list[Event]  # ``start`` counts from this series' first point


class Simulator:
    """A seeded, resumable generator: successive :meth:`generate` calls continue one stream."""

    def __init__(self, config: SimulatorConfig | None = None, seed: int = 0,
                 anomalies: bool = False, drift: bool = False, start_index: int = 0):
        self.config = config or SimulatorConfig()
        family = check_family(self.config.family)
        if drift and family != "smooth":
            raise ValueError(f"drift is simulated for the smooth family only, not {family!r}")
        self.anomalies = anomalies
        self.drift = drift
        # separate generators, so the stream is the same whatever the block sizes asked for
        schedule, drift_schedule, noise, burst, other = np.random.SeedSequence(seed).spawn(5)
        self._family = FAMILY_CLASSES[family](self.config, other) if family != "smooth" else None
        self._rng = np.random.default_rng(schedule)
        self._drift_rng = np.random.default_rng(drift_schedule)
        self._noise_rng = np.random.default_rng(noise)
        self._burst_rng = np.random.default_rng(burst)
        self._index = start_index
        self._noise_state = 0.0
        self._stuck: dict[int, float] = {}  # flatline start -> stuck value
        self._pending: list[Event] = []  # events overlapping the current or a later block
        self._next_anomaly = self._index + self._gap(self.config.anomaly_gap)
        self._next_drift = self._index + int(self._drift_rng.integers(*self.config.drift_gap))
        self._last_value = self.config.level

    def _gap(self, bounds: tuple[int, int]) -> int:
        return int(self._rng.integers(bounds[0], bounds[1] + 1))

    def seasonal(self, index: np.ndarray) -> np.ndarray:
        """Expected daily plus weekly pattern at point indices ``index`` (same units as values)."""
        c = self.config
        day = 2 * np.pi * index / c.period
        week = 2 * np.pi * index / (7 * c.period)
        return (c.daily_amplitude * (np.sin(day) + 0.3 * np.sin(2 * day + 0.7))
                + c.weekly_amplitude * np.sin(week))

    def expected(self, index: np.ndarray) -> np.ndarray:
        """Noise-free value at ``index`` without anomalies or drift."""
        c = self.config
        return c.level + c.trend_per_day * index / c.period + self.seasonal(index)

    def _schedule(self, end: int) -> None:
        """Plan every event that starts before ``end``."""
        c = self.config
        sd = c.noise_sd / np.sqrt(1 - c.noise_ar**2)  # marginal noise sd
        while self.anomalies and self._family is not None and self._next_anomaly < end:
            kind, start, length, magnitude = self._family.plan(self._rng, self._next_anomaly)
            self._pending.append(Event(start, length, kind, magnitude))
            self._next_anomaly = start + length + self._gap(c.anomaly_gap)
        while self.anomalies and self._family is None and self._next_anomaly < end:
            kind = ANOMALY_KINDS[int(self._rng.integers(len(ANOMALY_KINDS)))]
            length = {"spike": 1, "dip": 1}.get(kind) or int(self._rng.integers(15, 50))
            sign = 1 if kind == "spike" else -1 if kind == "dip" else self._rng.choice([-1, 1])
            scale = {"spike": 6.0, "dip": 6.0, "level_shift": 5.0, "variance_burst": 4.0}.get(kind, 0.0)
            magnitude = sign * sd * scale * self._rng.uniform(1.0, 1.5)
            self._pending.append(Event(self._next_anomaly, length, kind, float(magnitude)))
            self._next_anomaly += length + self._gap(c.anomaly_gap)
        rng = self._drift_rng
        while self.drift and self._next_drift < end:
            kind = DRIFT_KINDS[int(rng.integers(2))]
            length = 1 if kind == "sudden_drift" else int(rng.integers(200, 600))
            magnitude = float(rng.choice([-1, 1]) * c.daily_amplitude * rng.uniform(0.3, 0.6))
            self._pending.append(Event(self._next_drift, length, kind, magnitude))
            self._next_drift += length + int(rng.integers(c.drift_gap[0], c.drift_gap[1] + 1))

    def generate(self, n: int) -> Series:
        """Return the next ``n`` points of the stream."""
        c = self.config
        start, end = self._index, self._index + n
        index = np.arange(start, end, dtype=np.float64)
        self._schedule(end)
        if self._family is not None:
            return self._generated_by_family(index)
        noise = np.empty(n)
        shocks = self._noise_rng.normal(0.0, c.noise_sd, n)
        state = self._noise_state
        for i in range(n):  # AR(1) is a sequential recurrence; cheap at these sizes
            state = c.noise_ar * state + shocks[i]
            noise[i] = state
        self._noise_state = state
        values = self.expected(index) + noise + self._drift_offset(index)
        labels = np.zeros(n, dtype=bool)
        kinds = np.full(n, "", dtype=object)
        for event in self._pending:
            if event.kind in ANOMALY_KINDS and event.start < end:
                part = slice(max(event.start, start) - start, min(event.end, end) - start)
                self._apply(event, values, labels, kinds, part, index)
        if n:
            self._last_value = float(values[-1])
        # events in a Series are indexed within it, like its arrays
        new_events = [dataclasses.replace(e, start=e.start - start)
                      for e in self._pending if start <= e.start < end]
        # drift events stay (their offset is permanent); finished anomalies are dropped
        self._pending = [e for e in self._pending if e.kind in DRIFT_KINDS or e.end > end]
        self._index = end
        timestamps = START_EPOCH_S + index * c.interval_s
        return Series(timestamps, values, labels, kinds.astype(str), new_events)

    def _generated_by_family(self, index: np.ndarray) -> Series:
        """Return the next block of a family other than smooth (see :mod:`anomaly.families`)."""
        start, end = int(index[0]) if len(index) else self._index, self._index + len(index)
        overlapping = [e for e in self._pending if e.start < end and e.end > start]
        values = self._family.generate(index, overlapping)
        labels = np.zeros(len(index), dtype=bool)
        kinds = np.full(len(index), "", dtype=object)
        for event in overlapping:
            part = slice(max(event.start, start) - start, min(event.end, end) - start)
            labels[part] = True
            kinds[part] = event.kind
        new_events = [dataclasses.replace(e, start=e.start - start) for e in self._pending if start <= e.start < end]
        self._pending = [e for e in self._pending if e.end > end]
        self._index = end
        if len(index):
            self._last_value = float(values[-1])
        return Series(START_EPOCH_S + index * self.config.interval_s, values, labels, kinds.astype(str), new_events)

    def _drift_offset(self, index: np.ndarray) -> np.ndarray:
        """Level change from drift events up to each index: a ramp, then a plateau."""
        offset = np.zeros_like(index)
        for event in self._pending:
            if event.kind in DRIFT_KINDS:
                offset += event.magnitude * np.clip((index - event.start + 1) / event.length, 0, 1)
        return offset

    def _apply(self, event: Event, values, labels, kinds, part: slice, index) -> None:
        """Change ``values[part]`` in place to show anomaly ``event``; label those points."""
        c = self.config
        if event.kind in ("spike", "dip", "level_shift"):
            values[part] += event.magnitude
        elif event.kind == "variance_burst":
            values[part] += self._burst_rng.normal(0, abs(event.magnitude), part.stop - part.start)
        elif event.kind == "flatline":
            if event.start not in self._stuck:  # a stuck sensor repeats its last good reading
                before = values[part.start - 1] if part.start > 0 else self._last_value
                self._stuck[event.start] = before
            values[part] = self._stuck[event.start]
        elif event.kind == "contextual":
            # the pattern of the opposite time of day: each value is normal, its phase is not
            values[part] += self.seasonal(index[part] + c.period / 2) - self.seasonal(index[part])
        labels[part] = True
        kinds[part] = event.kind

    def points(self, block: int = 256) -> Iterator[Point]:
        """Yield the stream point by point, forever."""
        while True:
            series = self.generate(block)
            for t, v, y, k in zip(series.timestamps, series.values, series.labels, series.kinds):
                yield Point(float(t), float(v), bool(y), str(k))


def simulate(n: int, seed: int = 0, anomalies: bool = False, drift: bool = False,
             config: SimulatorConfig | None = None, start_index: int = 0) -> Series:
    """Return ``n`` simulated points as arrays (see :class:`Series`)."""
    return Simulator(config, seed=seed, anomalies=anomalies, drift=drift,
                     start_index=start_index).generate(n)
