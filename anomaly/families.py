"""Families of normal behaviour for the simulator, each with the anomalies that are anomalies *for it*.

Operations metrics are seldom smooth: bytes written come in bursts from a near-zero baseline,
message and error counts are small integers with many zeros, latencies are positive with a
heavy right tail, replica counts hold a value for long and change it by a step or two, and a
utilisation sits at 100% at times. A detector that keeps its false-alarm promise on one of
them may break it on another, so the simulator makes each (``SimulatorConfig.family``):

=========  ==============================================================  =====================================
family     normal behaviour                                                its anomalies
=========  ==============================================================  =====================================
smooth     daily and weekly cycles, trend, correlated noise                spike, dip, level_shift,
           (:class:`~anomaly.simulate.Simulator`'s own)                    variance_burst, flatline, contextual
bursty     a near-zero baseline; a job's short burst every 6 hours, and     giant_burst, burst_storm, silence,
           bursts at random twice a day of widely varying heights         flatline
counts     negative binomial counts, a mean of 1-6 that follows the day   count_spike, rate_shift, drop,
                                                                           flatline
heavytail  log-normal latencies around a daily median, with a Pareto      tail_spike, median_shift, fast_fail,
           share of slow points                                            flatline
steps      a whole number held for long, moved by its usual steps (1-2)   big_step, flapping, zero
           toward a daily target
bounded    a percentage with a daily cycle that sits at 100% at peak       dip, level_shift, flatline, pinned
=========  ==============================================================  =====================================

Each family draws from generators of its own, a fixed number of draws per point, so a stream
is the same whatever the block sizes asked for. The numbers below describe the simulated
metrics (what such metrics look like in operations), not any detector.
"""

from __future__ import annotations

import numpy as np

from .config import SimulatorConfig

FAMILIES = ("smooth", "bursty", "counts", "heavytail", "steps", "bounded")


class Family:
    """One family's normal process and anomalies; :meth:`generate` continues its stream block by block."""

    name = ""
    kinds: tuple[str, ...] = ()
    lengths: dict[str, tuple[int, int]] = {}  # kind -> (shortest, longest) points
    magnitudes: dict[str, tuple[float, float]] = {}  # kind -> (low, high) of its magnitude, drawn uniformly

    def __init__(self, config: SimulatorConfig, seed: np.random.SeedSequence):
        self.config = config
        # one generator per kind of draw, each drawn a fixed number of times a point: the same stream whatever
        # the block sizes (two kinds of draw from one generator would interleave differently)
        self._streams = [np.random.default_rng(s) for s in seed.spawn(6)]
        self._last = np.nan  # the value of the point before the block (a stuck sensor repeats it)
        self._stuck: dict[int, float] = {}  # flatline start -> the value it repeats

    def day(self, index: np.ndarray) -> np.ndarray:
        """Return the daily phase angle (radians) of point indices ``index``."""
        return 2 * np.pi * np.asarray(index, dtype=np.float64) / self.config.period

    def week(self, index: np.ndarray) -> np.ndarray:
        """Return the weekly phase angle (radians) of point indices ``index``."""
        return self.day(index) / 7

    def plan(self, rng: np.random.Generator, start: int) -> tuple[str, int, int, float]:
        """Return ``(kind, start, length, magnitude)`` of the next anomaly, planned to start at ``start`` or
        where the family says it can be seen (see :meth:`placed`)."""
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        low, high = self.lengths.get(kind, (15, 50))
        length = int(rng.integers(low, high + 1))
        magnitude = float(rng.uniform(*self.magnitudes.get(kind, (0.0, 0.0))))
        return kind, self.placed(kind, start), length, magnitude

    def placed(self, kind: str, start: int) -> int:
        """Return where an anomaly of ``kind`` planned at ``start`` starts (default: there)."""
        return start

    def generate(self, index: np.ndarray, events: list) -> np.ndarray:
        """Return the values at consecutive ``index`` with the anomalies of ``events`` (those that overlap the
        block; ``start`` in stream indices) applied; advances the family's state."""
        values = self._values(index, self._active(index, events))
        for event in (e for e in events if e.kind == "flatline"):  # a stuck sensor repeats its last good reading
            inside = (index >= event.start) & (index < event.start + event.length)
            if not inside.any():
                continue
            first = int(np.argmax(inside))
            if event.start not in self._stuck:
                self._stuck[event.start] = float(values[first - 1]) if first > 0 else self._last
            values[inside] = self._stuck[event.start]
        if len(values):
            self._last = float(values[-1])
        self._stuck = {start: value for start, value in self._stuck.items()
                       if any(e.start == start and e.start + e.length > index[-1] + 1 for e in events)} \
            if len(index) else self._stuck
        return values

    @staticmethod
    def _active(index: np.ndarray, events: list) -> list:
        """Return, for each point, the anomaly event it lies in, or ``None``."""
        active = [None] * len(index)
        first = int(index[0]) if len(index) else 0
        for event in events:
            lo, hi = max(event.start - first, 0), min(event.start + event.length - first, len(index))
            for i in range(lo, hi):
                active[i] = event
        return active

    def _values(self, index: np.ndarray, active: list) -> np.ndarray:
        raise NotImplementedError


class Bursty(Family):
    """Bytes written or sent: a near-zero baseline, a scheduled job's short burst every ``JOB_EVERY`` of a day,
    and longer bursts at random about once a day, of heavy-tailed heights. Recurring bursts at their usual
    heights and rate are normal."""

    name = "bursty"
    kinds = ("giant_burst", "burst_storm", "silence", "flatline")
    lengths = {"giant_burst": (1, 6), "burst_storm": (40, 80)}
    magnitudes = {"giant_burst": (60.0, 100.0)}  # times the median burst (normal ones reach 20 times at 1 in 1,000)
    BASE = 2e4  # bytes per interval between bursts (log-normal around a mild daily cycle)
    BASE_SIGMA, BASE_AR = 0.25, 0.5
    JOB_EVERY = 4  # job bursts a day (a backup, a cron job: on the dot)
    JOB_POINTS = 2
    HEIGHT = 2e6  # median burst, bytes per interval
    JOB_SIGMA = 0.3
    RANDOM_EVERY = 0.5  # days between random bursts, on average
    RANDOM_POINTS = (1, 20)  # their length, uniform
    RANDOM_SIGMA = 1.0  # their heights vary far more than a job's: by 10 times between the 1st and 99th of 100
    STORM_RATE = 0.3  # chance a point starts a burst during a burst storm
    IN_BURST_SIGMA = 0.15

    def __init__(self, config: SimulatorConfig, seed: np.random.SeedSequence):
        super().__init__(config, seed)
        self._state = 0.0
        self._job = (0, 0.0)  # points left, height
        self._random = (0, 0.0)

    @property
    def job_every(self) -> int:
        """Points between two job bursts."""
        return max(self.config.period // self.JOB_EVERY, 4)

    def placed(self, kind: str, start: int) -> int:
        if kind != "silence":
            return start
        return -(-start // self.job_every) * self.job_every  # at a job's slot: the first burst that does not come

    def plan(self, rng, start):
        kind, start, length, magnitude = super().plan(rng, start)
        if kind == "silence":  # three jobs that do not run
            length = 2 * self.job_every + self.JOB_POINTS
        return kind, start, length, magnitude

    def _values(self, index, active):
        n = len(index)
        z = self._streams[0].standard_normal((n, 4))
        u = self._streams[1].random((n, 2))
        base = self.BASE * (1 + 0.3 * np.sin(self.day(index)))
        rate = 1 / (self.RANDOM_EVERY * self.config.period)
        low, high = self.RANDOM_POINTS
        values = np.empty(n)
        for i in range(n):
            event = active[i]
            kind = event.kind if event is not None else ""
            self._state = self.BASE_AR * self._state + np.sqrt(1 - self.BASE_AR**2) * z[i, 0]
            value = base[i] * np.exp(self.BASE_SIGMA * self._state)
            left, height = self._job
            if int(index[i]) % self.job_every == 0 and kind != "silence":
                left, height = self.JOB_POINTS, self.HEIGHT * np.exp(self.JOB_SIGMA * z[i, 1])
            if left > 0:
                value += height * np.exp(self.IN_BURST_SIGMA * z[i, 3])
                left -= 1
            self._job = (left, height)
            left, height = self._random
            if left == 0 and u[i, 0] < (self.STORM_RATE if kind == "burst_storm" else rate):
                left = low + int(u[i, 1] * (high - low + 1))
                if kind == "burst_storm":
                    left = 1 + int(u[i, 1] * 3)  # a storm's bursts are short: 1-3 points
                height = self.HEIGHT * np.exp(self.RANDOM_SIGMA * z[i, 2])
            if left > 0:
                value += height * np.exp(self.IN_BURST_SIGMA * z[i, 3])
                left -= 1
            self._random = (left, height)
            if kind == "giant_burst":
                value += event.magnitude * self.HEIGHT * np.exp(self.IN_BURST_SIGMA * z[i, 3])
            values[i] = value
        return values


class Counts(Family):
    """Messages, errors or requests per interval at low volume: negative binomial counts around a daily mean."""

    name = "counts"
    kinds = ("count_spike", "rate_shift", "drop", "flatline")
    lengths = {"count_spike": (1, 3), "rate_shift": (30, 60), "drop": (30, 60)}
    magnitudes = {"count_spike": (8.0, 12.0), "rate_shift": (3.0, 4.0)}  # times the mean
    MEAN, DAILY, WEEKLY = 2.5, 0.9, 0.15  # mean count; log-amplitudes of its daily and weekly cycles
    DISPERSION = 4.0  # negative binomial shape: variance = mean + mean^2 / 4
    SPIKE_EXTRA = 15.0  # a burst of messages adds this many on top of the multiplied mean

    def mean(self, index: np.ndarray) -> np.ndarray:
        """Return the expected count at ``index``."""
        return self.MEAN * np.exp(self.DAILY * np.sin(self.day(index)) + self.WEEKLY * np.sin(self.week(index)))

    def _values(self, index, active):
        rate = self.mean(index)
        for i, event in enumerate(active):
            if event is None:
                continue
            if event.kind == "count_spike":
                rate[i] = rate[i] * event.magnitude + self.SPIKE_EXTRA
            elif event.kind == "rate_shift":
                rate[i] *= event.magnitude
            elif event.kind == "drop":
                rate[i] = 0.0
        mixed = rate * self._streams[0].gamma(self.DISPERSION, 1 / self.DISPERSION, len(index))
        return self._streams[1].poisson(mixed).astype(np.float64)


class HeavyTail(Family):
    """Latencies in ms: log-normal around a daily median, and a Pareto share of slow points."""

    name = "heavytail"
    kinds = ("tail_spike", "median_shift", "fast_fail", "flatline")
    lengths = {"tail_spike": (1, 2), "median_shift": (30, 60), "fast_fail": (15, 40)}
    magnitudes = {"tail_spike": (50.0, 80.0), "median_shift": (4.0, 6.0), "fast_fail": (0.05, 0.1)}  # x median
    MEDIAN, DAILY = 120.0, 0.25
    SIGMA, AR = 0.45, 0.4
    SLOW_SHARE, SLOW_SHAPE = 0.03, 3.0  # points that wait on something slow, times (1 + Pareto(3))

    def __init__(self, config: SimulatorConfig, seed: np.random.SeedSequence):
        super().__init__(config, seed)
        self._state = 0.0

    def median(self, index: np.ndarray) -> np.ndarray:
        """Return the median latency at ``index`` (ms)."""
        return self.MEDIAN * (1 + self.DAILY * np.sin(self.day(index)))

    def _values(self, index, active):
        n = len(index)
        z = self._streams[0].standard_normal(n)
        u = self._streams[1].random((n, 2))
        noise = np.empty(n)
        for i in range(n):
            self._state = self.AR * self._state + np.sqrt(1 - self.AR**2) * z[i]
            noise[i] = self._state
        slow = np.where(u[:, 0] < self.SLOW_SHARE, (1 - u[:, 1]) ** (-1 / self.SLOW_SHAPE), 1.0)  # Pareto's inverse
        values = self.median(index) * np.exp(self.SIGMA * noise) * slow
        for i, event in enumerate(active):
            if event is not None and event.kind in ("median_shift", "fast_fail"):
                values[i] *= event.magnitude
            elif event is not None and event.kind == "tail_spike":
                values[i] = self.median(index[i]) * event.magnitude * np.exp(self.SIGMA * noise[i])
        return values


class Steps(Family):
    """A replica or worker count: a whole number held for long, moved by 1 or 2 toward a daily target."""

    name = "steps"
    kinds = ("big_step", "flapping", "zero")
    lengths = {"flapping": (15, 40)}
    magnitudes = {"big_step": (6.0, 10.0), "flapping": (1.0, 2.99)}  # its size (flapping: 1 or 2)
    TARGET, DAILY = 8.0, 4.0  # the level the count moves toward follows the day
    CHANGE = 1 / 30  # chance a point changes the count
    LOW, HIGH = 1, 20

    def __init__(self, config: SimulatorConfig, seed: np.random.SeedSequence):
        super().__init__(config, seed)
        self._level = self.TARGET

    def _values(self, index, active):
        n = len(index)
        u = self._streams[0].random((n, 3))
        target = self.TARGET + self.DAILY * np.sin(self.day(index))
        values = np.empty(n)
        for i in range(n):
            if u[i, 0] < self.CHANGE:
                up = u[i, 1] < np.clip(0.5 + (target[i] - self._level) / 8, 0.1, 0.9)
                size = 1 if u[i, 2] < 0.7 else 2
                self._level = float(np.clip(self._level + (size if up else -size), self.LOW, self.HIGH))
            value, event = self._level, active[i]
            if event is not None and event.kind == "big_step":
                size = float(round(event.magnitude))
                value += size if self._level < 10 else -min(size, self._level)
            elif event is not None and event.kind == "flapping":
                value += int(event.magnitude) * ((int(index[i]) - event.start) % 2)
            elif event is not None and event.kind == "zero":
                value = 0.0
            values[i] = value
        return values


class Bounded(Family):
    """A utilisation in percent: a daily cycle whose peak is cut at 100%, with correlated noise."""

    name = "bounded"
    kinds = ("dip", "level_shift", "flatline", "pinned")
    lengths = {"dip": (1, 3)}
    magnitudes = {"dip": (40.0, 60.0), "level_shift": (20.0, 30.0)}  # percentage points down
    LEVEL, DAILY, WEEKLY = 62.0, 45.0, 4.0
    NOISE_SD, AR = 2.5, 0.5

    def __init__(self, config: SimulatorConfig, seed: np.random.SeedSequence):
        super().__init__(config, seed)
        self._state = 0.0

    def expected(self, index: np.ndarray) -> np.ndarray:
        """Return the noise-free utilisation at ``index`` before the cut at 100 (percent)."""
        return self.LEVEL + self.DAILY * np.sin(self.day(index)) + self.WEEKLY * np.sin(self.week(index))

    def placed(self, kind: str, start: int) -> int:
        # a value stuck at 100 or pinned at 100 at peak is what the metric does anyway: start where it is not
        limit = {"flatline": 90.0, "pinned": 50.0}.get(kind)
        while limit is not None and self.expected(np.array([start]))[0] >= limit:
            start += 1
        return start

    def _values(self, index, active):
        n = len(index)
        z = self._streams[0].standard_normal(n)
        noise = np.empty(n)
        for i in range(n):
            self._state = self.AR * self._state + np.sqrt(1 - self.AR**2) * z[i]
            noise[i] = self._state
        values = self.expected(index) + self.NOISE_SD * noise
        for i, event in enumerate(active):
            if event is not None and event.kind in ("dip", "level_shift"):
                values[i] -= event.magnitude
            elif event is not None and event.kind == "pinned":
                values[i] = 100.0
        return np.clip(values, 0.0, 100.0)


FAMILY_CLASSES = {cls.name: cls for cls in (Bursty, Counts, HeavyTail, Steps, Bounded)}


def family_kinds(family: str) -> tuple[str, ...]:
    """Return the anomaly kinds family ``family`` injects."""
    from .simulate import ANOMALY_KINDS

    check_family(family)
    return ANOMALY_KINDS if family == "smooth" else FAMILY_CLASSES[family].kinds


def check_family(family: str) -> str:
    """Return ``family`` if it is one of :data:`FAMILIES`, else raise ``ValueError`` naming them."""
    if family not in FAMILIES:
        raise ValueError(f"unknown simulator family {family!r}; choose one of {', '.join(FAMILIES)}")
    return family
