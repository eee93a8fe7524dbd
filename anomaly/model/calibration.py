"""Raw score -> tail p-value; combination of p-values; the score users see.

Calibrators are fitted on held-out normal data only (never the training part), so a
p-value means what it says: the chance that a normal point scores at least this high.

>>> cal = Calibrator().fit(np.arange(1000.0))
>>> float(cal.p_value(np.array([999.0]))[0]) < 0.01
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import special

P_FLOOR = 1e-12  # the smallest p-value reported: beyond this, evidence is not measurable
MIN_SAMPLE = 10  # fewest scores a calibrator is fitted on (a 100-row history has about 15 per part)
RESOLUTION = 1e-6  # relative to the largest calibration score: differences below this are rounding, not evidence
COMBINERS = ("cauchy", "bonferroni")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # raw scores beyond it are rounded to it (see single_precision)
CAUCHY_CEILING = 0.99  # larger p-values count as this in the Cauchy combination (see combine)


@dataclass
class Calibrator:
    """Maps scores to tail p-values from a held-out sample of normal scores.

    Inside the sample: ``p(s) = (1 + #{cal >= s}) / (n + 1)``. Beyond the ``tail_size``
    largest calibration scores, a generalised Pareto tail fitted to them takes over
    (peaks over threshold), so p-values keep falling smoothly past the sample's maximum.
    Its shape is kept >= 0 (no lighter than exponential), erring toward fewer alarms, and
    (``cautious``) raised by ``1/sqrt(k)``, about one standard error of a shape fitted on
    ``k`` tail scores: taken at face value, an unlucky short sample made one calibration
    in ten flag 6.8x the target on heavy-tailed scores.
    """

    tail_size: int = 0  # 0: 5% of the sample, between 30 and 500 points
    cautious: bool = True  # err heavier by the tail shape's uncertainty (see fit)
    # the scores are -log p-values of the detector's own model (see fit): beyond the sample, that model's tail
    unit_tail: bool = False
    sorted_: np.ndarray | None = None
    threshold_: float = np.inf
    gpd_: tuple[float, float] = (0.0, 1.0)  # shape, scale
    size_: int = 0  # the sample fitted on, when ``sorted_`` holds only a thinned copy of it (see thinned)
    share_: float = 0.0  # ...and the share of that sample above the tail's threshold

    def fit(self, scores: np.ndarray) -> Calibrator:
        """Learn from ``(n,)`` finite scores of normal points; return ``self``."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or len(scores) < MIN_SAMPLE:
            raise ValueError(f"calibration needs at least {MIN_SAMPLE} scores in a 1-D array, got shape {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError("calibration scores must be finite")
        self.sorted_ = np.sort(scores)
        self.size_, self.share_ = 0, 0.0  # the whole sample
        n = len(scores)
        if self.unit_tail:
            # a score that is -log of its model's tail probability (Repeats): up to the sample's largest, the
            # sample says how often such scores come; beyond it, each unit further is e times rarer, as that
            # model says. A sample of a rare event (most scores 0, a stuck run seldom in it) cannot fit a tail,
            # and one fitted made every score beyond it an alarm (a single repeat of a quantised value)
            self.threshold_ = float(np.nextafter(self.sorted_[-1], -np.inf))  # the ties at the top count
            self.gpd_ = (0.0, 1.0)
            # the top is no rarer than the model says: a sample short of a rare event's long runs (a replica count
            # that held its value less long than usual lately) made each long run an alarm
            ties = n - int(np.searchsorted(self.sorted_, self.threshold_, side="right"))
            self.size_, self.share_ = n, max(ties / (n + 1.0), float(np.exp(-self.sorted_[-1])))
            return self
        k = self.tail_size or int(np.clip(0.05 * n, 30, 500))
        k = min(k, n // 2)
        self.threshold_ = float(self.sorted_[n - k - 1])
        excess = self.sorted_[n - k:] - self.threshold_
        excess = excess[excess > 0]  # ties at the threshold carry no tail shape
        if len(excess) >= 10 and np.ptp(excess) > 0:
            shape, scale = gpd_fit(excess)
            if not shape >= 0:
                # a bounded tail (shape < 0) is often what a light tail looks like at a finite
                # threshold, and it makes rare scores look impossible: too many alarms. The
                # exponential tail (shape 0) is the conservative floor.
                shape, scale = 0.0, float(excess.mean())
            # the shape of a few dozen tail scores is uncertain by about 1/sqrt(k); a tail too light
            # makes every rare normal point an alarm far beyond the sample, so err heavier by that much
            shape += 1.0 / np.sqrt(len(excess)) if self.cautious else 0.0
            self.gpd_ = (float(shape), float(scale))
        else:
            # too few distinct scores above the threshold to fit a shape (quantised or noise-free
            # data): an exponential tail as wide as they reach. A scale of ~0 here made float-level
            # differences p = 1e-12 alarms (hundreds per noise-free NAB file).
            reach = float(excess.mean()) if len(excess) else 0.0
            self.gpd_ = (0.0, max(reach, RESOLUTION * max(float(np.abs(self.sorted_).max()), 1.0)))
        return self

    def p_value(self, scores: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` tail probabilities in ``[P_FLOOR, 1]`` for ``scores``."""
        if self.sorted_ is None:
            raise RuntimeError("Calibrator: call fit() before p_value()")
        scores = np.ascontiguousarray(scores, dtype=np.float64)
        # compiled, one pass: tail_p_values' dozen numpy calls cost 25-50 us a live point per calibrator
        return _calibrated(scores, self.sorted_, self.size, bool(self.size_), self.threshold_,
                           self.share_, *self.gpd_)

    @property
    def size(self) -> int:
        """The number of scores this calibrator was fitted on (``sorted_`` may hold a thinned copy)."""
        return self.size_ or len(self.sorted_)

    @property
    def tail_share(self) -> float:
        """The tail's weight: sample scores above its threshold (at least 1: ties at the top weigh 1/(n+1)),
        over the sample's size plus one."""
        if self.size_:
            return self.share_
        count = max(len(self.sorted_) - int(np.searchsorted(self.sorted_, self.threshold_, side="right")), 1)
        return count / (len(self.sorted_) + 1.0)

    def thinned(self, keep: int) -> Calibrator:
        """Return this calibrator with its sample thinned to ``keep`` evenly spaced order statistics (itself
        when it holds no more).

        Beyond the threshold the fitted tail decides, as before. Below it, how many sample
        scores lie under a score is interpolated between the order statistics kept (exact at
        each, and for distinct scores within one of the truth between): a stream's recalibrated
        calibrators hold a few hundred scores, not thousands (memory of many series). A step
        function of the thinned sample instead, with a resolution of ``1/keep``, moved the
        combined evidence's fitted tail, which rests on the detectors' moderate p-values (NAB's
        machine_temperature: 15 false positives became 74)."""
        n = len(self.sorted_)
        if n <= keep:
            return self
        thin = Calibrator(tail_size=self.tail_size, cautious=self.cautious, threshold_=self.threshold_,
                          gpd_=self.gpd_, size_=self.size, share_=self.tail_share)
        thin.sorted_ = self.sorted_[_kept_ranks(keep, n)]
        return thin

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the learned state as arrays for an ``.npz`` file."""
        thinned = {"size": np.array(self.size_), "share": np.array(self.share_)} if self.size_ else {}
        # (in double precision: a sample lent by a single-precision table is the same numbers)
        return {"sorted": np.asarray(self.sorted_, dtype=np.float64), "threshold": np.array(self.threshold_),
                "gpd": np.array(self.gpd_), "tail_size": np.array(self.tail_size), **thinned}

    @classmethod
    def from_arrays(cls, arrays) -> Calibrator:
        """Rebuild a fitted calibrator from :meth:`to_arrays` output."""
        cal = cls(tail_size=int(arrays["tail_size"]))
        cal.sorted_ = np.asarray(arrays["sorted"], dtype=np.float64)
        cal.threshold_ = float(arrays["threshold"])
        cal.gpd_ = tuple(float(v) for v in arrays["gpd"])
        if "size" in arrays:
            cal.size_, cal.share_ = int(arrays["size"]), float(arrays["share"])
        if not cal.gpd_[0] >= 0 or not cal.gpd_[1] > 0:
            # fit() keeps shape >= 0; p_value's closed form holds only there
            raise ValueError(f"calibration: tail shape must be >= 0 and scale > 0, got {cal.gpd_}")
        return cal


class CalibratorTable:
    """Many calibrators side by side, for many series scored together: one score per calibrator.

    Each calibrator's sorted sample is copied once into one array (:meth:`add` returns its
    slot), so a block with a score for each of thousands of series is calibrated in a few
    array operations instead of one :meth:`Calibrator.p_value` call each. The p-values are
    those :meth:`Calibrator.p_value` gives (the same operations, row by row), thinned samples
    (:meth:`Calibrator.thinned`) too. Slots of calibrators no longer in use are given back with
    :meth:`remove`; their samples' room is taken back once it is an eighth of the live samples.

    ``dtype``: of the copies. Single precision halves a table (memory of many series) and loses
    nothing: every raw score and every combined statistic is made in single precision
    (:func:`single_precision`, :func:`combine`), and so is every sample a calibrator is fitted on.
    """

    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self._data = np.empty(1024, dtype=self.dtype)
        self._used = 0  # entries of _data written (live or not)
        self._live = 0  # entries of _data that belong to calibrators still in use
        self._sources: list[Calibrator | None] = []  # the calibrator of each slot (None: free)
        self._free: list[int] = []
        self._columns = {name: np.zeros(16, dtype=dtype) for name, dtype in
                         (("offset", np.int64), ("kept", np.int64), ("size", np.int64), ("share", np.float64),
                          ("threshold", np.float64), ("shape", np.float64), ("scale", np.float64))}

    def add(self, calibrator: Calibrator) -> int:
        """Copy in ``calibrator``'s sample; return its slot (what :meth:`p_value` takes).

        The calibrator then reads its sample from the table (``sorted_`` becomes a read-only
        view of the copy): a series' calibration is held once, not twice (memory of many series)."""
        sample = calibrator.sorted_
        # the room of calibrators gone is taken back once it is an eighth of the live samples, and a table out of
        # room grows by an eighth: it holds little more than its live samples. Many series recalibrate again and
        # again (often together), each time adding a sample and letting one go: growing by a quarter and taking
        # room back only when out of it held 1.5 times the live samples (memory of many series)
        self.tidy()
        if self._used + len(sample) > len(self._data):
            grown = np.empty(max(len(self._data) + len(self._data) // 8, self._used + len(sample)), dtype=self.dtype)
            grown[:self._used] = self._data[:self._used]
            self._data = grown
            self._lend()
        slot = self._free.pop() if self._free else len(self._sources)
        if slot == len(self._sources):
            self._sources.append(None)
            if slot >= len(self._columns["offset"]):
                for name, column in self._columns.items():
                    self._columns[name] = np.concatenate([column, np.zeros_like(column)])
        self._sources[slot] = calibrator
        self._data[self._used:self._used + len(sample)] = sample
        n = len(sample)
        c = self._columns
        c["offset"][slot], c["kept"][slot], c["size"][slot] = self._used, n, calibrator.size
        c["share"][slot] = calibrator.tail_share
        c["threshold"][slot] = calibrator.threshold_
        c["shape"][slot], c["scale"][slot] = calibrator.gpd_
        self._used += n
        self._live += n
        self._lend(slot)
        return slot

    def _lend(self, slot: int | None = None) -> None:
        """Point the calibrator of ``slot`` (``None``: of every slot in use) at its sample's copy in the table."""
        c = self._columns
        for i in range(len(self._sources)) if slot is None else [slot]:
            if (calibrator := self._sources[i]) is not None:
                view = self._data[c["offset"][i]:c["offset"][i] + c["kept"][i]]
                view.flags.writeable = False
                calibrator.sorted_ = view

    def tidy(self) -> None:
        """Take back the room of calibrators gone once it is an eighth of the live samples (see :meth:`add`).

        Removals come when ensembles are let go, often many at once (series recalibrated together):
        call this where no :meth:`p_value` is under way (it moves the samples)."""
        if 8 * (self._used - self._live) >= max(self._live, 1):
            self._compact(0)

    def remove(self, slot: int) -> None:
        """Give back ``slot``: its calibrator is no longer in use (its room is taken back by :meth:`tidy` or
        :meth:`add`)."""
        self._live -= int(self._columns["kept"][slot])
        self._sources[slot] = None
        self._free.append(slot)

    def _compact(self, needed: int) -> None:
        """Copy the samples of calibrators in use to a new array with room for ``needed`` more and an eighth."""
        data, used = np.empty(max(self._live + needed + (self._live + needed) // 8, 1024), dtype=self.dtype), 0
        for slot, calibrator in enumerate(self._sources):
            if calibrator is not None:
                n = len(calibrator.sorted_)
                data[used:used + n] = calibrator.sorted_
                self._columns["offset"][slot] = used
                used += n
        self._data, self._used = data, used
        self._lend()

    def p_value(self, slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` tail probabilities of ``scores`` ``(n,)``, row ``i`` by the calibrator in ``slots[i]``."""
        scores = np.asarray(scores, dtype=np.float64)
        c = self._columns
        n = c["size"][slots]
        at_least = n - _search_left(self._data, c["offset"][slots], c["kept"][slots], n, scores)
        return tail_p_values(scores, n, at_least, c["threshold"][slots], lambda: c["share"][slots],
                             c["shape"][slots], c["scale"][slots])


def single_precision(raw: np.ndarray) -> np.ndarray:
    """Return raw detector scores rounded to single precision (float32's range, NaN kept), as float64.

    Every raw score is rounded where it is made, in training and in streaming alike, so that the
    scores a stream keeps to recalibrate from (single precision: a third less memory per series)
    compare with new scores and calibration samples exactly as their float64 originals would: a
    score equal to a sample value stays equal. Rounded only where they were kept, a kept value
    moved to one side of an equal new score, and quantised series tie often (measured on NAB:
    Holt-Winters' scores of art_increase_spike_density take 116 values over 3,969 points; its
    decisions alone changed by 7 false alarms)."""
    return np.minimum(np.maximum(raw, -FLOAT32_MAX), FLOAT32_MAX).astype(np.float32).astype(np.float64)


def tail_p_values(scores: np.ndarray, n, at_least: np.ndarray, threshold, tail_share, shape, scale) -> np.ndarray:
    """Return ``(m,)`` p-values in ``[P_FLOOR, 1]`` of ``scores`` (see :class:`Calibrator`).

    ``n``: sample sizes; ``at_least``: how many sample scores each score does not exceed
    (interpolated for a thinned sample); ``threshold``, ``shape``, ``scale``: the tail's;
    ``tail_share()``: sample scores above the threshold over the sample's size plus one (called
    only when a score lies beyond it). Each may be one number or one per score: one
    calibrator, or one per row of a tick of many series (:class:`CalibratorTable`).
    """
    p = (1.0 + at_least) / (n + 1.0)
    above = scores > threshold
    if above.any():
        def beyond(value):
            return value[above] if np.ndim(value) else value

        # genpareto.sf(x, shape, scale=scale) without scipy.stats' per-call overhead
        # (~0.2 ms, most of a live point's budget): the same function, inv_boxcox(-x, -c)
        tail = special.inv_boxcox(-((scores[above] - beyond(threshold)) / beyond(scale)), -beyond(shape))
        p[above] = beyond(tail_share()) * tail
    # (np.clip(np.nan_to_num(p, nan=1.0), ...) gives the same at a quarter of a call's cost: p is never infinite)
    return np.minimum(np.maximum(np.where(np.isnan(p), 1.0, p), P_FLOOR), 1.0)


def _kept_ranks(keep: int, n: int) -> np.ndarray:
    """Return the ``(keep,)`` ranks, from 0 to ``n - 1``, of the order statistics a thinned sample keeps."""
    return np.array([_kept_rank(j, n, keep) for j in range(keep)], dtype=np.int64)


@numba.njit(cache=True)
def _kept_rank(j, n, keep):  # pragma: no cover (compiled)
    """The rank in a sample of ``n`` of the ``j``-th of ``keep`` order statistics a thinned sample keeps (a float)."""
    return np.floor(j * ((n - 1) / (keep - 1)) + 0.5)


@numba.njit(nogil=True, cache=True)
def _search_left(data, offset, kept, size, scores):  # pragma: no cover (compiled)
    """Return ``(m,)`` float counts of sample scores below each score, row ``i``'s sample sorted in
    ``data[offset[i]:offset[i] + kept[i]]``.

    A whole sample (``kept == size``): ``np.searchsorted(sample, score, side="left")``. A thinned one (the
    order statistics of ranks :func:`_kept_ranks` of a sample of ``size``): interpolated between them."""
    out = np.empty(len(scores))
    for i in range(len(scores)):
        out[i] = _below(data, offset[i], kept[i], size[i], scores[i])
    return out


@numba.njit(nogil=True, cache=True)
def _below(data, base, m, n, x):  # pragma: no cover (compiled)
    """The count of :func:`_search_left` for one score ``x`` and the sample ``data[base:base + m]`` of ``n``."""
    lo, hi = base, base + m
    while lo < hi:
        mid = (lo + hi) >> 1
        if data[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    j = lo - base
    if m == n or j == 0:
        return np.float64(j)
    if j == m:
        return np.float64(n)
    # data[j - 1] < x <= data[j]: between ranks r0 + 1 and r1
    r0, r1 = _kept_rank(j - 1, n, m), _kept_rank(j, n, m)
    below, above = np.float64(data[base + j - 1]), np.float64(data[base + j])  # (a table in single precision)
    return r0 + 1.0 + (r1 - r0 - 1.0) * (x - below) / (above - below)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _calibrated(scores, data, n, thinned, threshold, share, shape, scale):  # pragma: no cover (compiled)
    """Return ``(m,)`` what :func:`tail_p_values` gives for one :class:`Calibrator`'s sample ``data`` (sorted; of
    ``n`` scores, ``thinned`` or whole) and tail (``share`` for a thinned sample; a whole one counts its own)."""
    out = np.empty(len(scores))
    m = len(data)
    for i in range(len(scores)):
        x = scores[i]
        if not thinned and math.isnan(x):
            at_least = 0.0  # (np.searchsorted puts NaN after every number)
        else:
            at_least = n - _below(data, 0, m, n, x)
        p = (1.0 + at_least) / (n + 1.0)
        if x > threshold:
            if not thinned:  # the tail's weight (Calibrator.tail_share): scores above the threshold, at least 1
                share = max(m - _not_above(data, threshold), 1) / (m + 1.0)
            y, power = -((x - threshold) / scale), -shape  # genpareto.sf, as scipy.special.inv_boxcox(y, power)
            p = share * (math.exp(y) if power == 0.0 else math.exp(math.log1p(power * y) / power))
        if math.isnan(p):
            p = 1.0
        out[i] = min(max(p, P_FLOOR), 1.0)
    return out


@numba.njit(nogil=True, cache=True)
def _not_above(data, x):  # pragma: no cover (compiled)
    """``np.searchsorted(data, x, side="right")``: how many of sorted ``data`` are at most ``x``."""
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) >> 1
        if data[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def gpd_fit(excess: np.ndarray) -> tuple[float, float]:
    """Return the generalised Pareto shape (scipy's ``c``) and scale of positive ``excess`` values.

    Zhang & Stephens (2009): the posterior mean of ``theta = -shape / scale`` over a grid
    of ``20 + sqrt(n)`` values, weighted by the profile likelihood. In closed form, it runs
    in 0.1 ms where scipy's maximum likelihood takes 5 ms, and it is less biased on the few
    dozen values of a tail (measured: true shape 0.2 at n = 30 gives 0.19 against 0.08).
    Recalibrating while streaming fits five of these each time.
    """
    y = np.sort(np.asarray(excess, dtype=np.float64))
    n = len(y)
    m = 20 + int(np.sqrt(n))
    quartile = y[max(int(n / 4 + 0.5) - 1, 0)]
    theta = 1.0 / y[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3.0 * quartile)
    k = -np.mean(np.log1p(-theta[:, None] * y), axis=1)
    # a few tied values can make k 0 (NaN): the caller's shape check then falls back to an exponential tail;
    # a far less likely grid point only gets weight 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        profile = n * (np.log(theta / k) + k - 1.0)
        weights = 1.0 / np.exp(profile[None, :] - profile[:, None]).sum(axis=1)
    theta_hat = float(np.sum(theta * weights))
    k_hat = float(-np.mean(np.log1p(-theta_hat * y)))
    return -k_hat, k_hat / theta_hat


def evidence_columns(detectors) -> tuple[np.ndarray, np.ndarray]:
    """Return the column indices of the combined detectors and of the ones that stand alone.

    A detector whose scores are -log p-values of its own model (:func:`unit_tail`: Repeats) gives evidence of a
    rare kind: its p-value is 1 at almost every point. In the Cauchy combination such a p-value weighs as a
    normal point's, and it diluted the others' evidence (measured on NAB: more false alarms where none of its
    evidence was). It stands alone: the decision takes the smaller of its p-value and the combination's of the
    others (see :func:`with_alone`), as it does a record's."""
    alone = np.array([unit_tail(d) for d in detectors], dtype=bool)
    return np.flatnonzero(~alone), np.flatnonzero(alone)


def combined_statistic(p_detectors: np.ndarray, combined: np.ndarray, alone: np.ndarray, method: str) -> np.ndarray:
    """Return :func:`combine`'s ``(n,)`` statistic of the ``combined`` columns of ``(n, k)`` ``p_detectors`` (all of
    them when none stands ``alone``; see :func:`evidence_columns`)."""
    return combine(p_detectors[:, combined] if len(alone) else p_detectors, method)


def with_alone(p_value: np.ndarray, p_detectors: np.ndarray, alone: np.ndarray) -> np.ndarray:
    """Return ``(n,)`` the combined ``p_value`` lowered to the smallest p-value of the detectors ``alone`` (columns
    of ``(n, k)`` ``p_detectors``) where that is smaller."""
    return np.minimum(p_value, p_detectors[:, alone].min(axis=1)) if len(alone) else p_value


def unit_tail(detector) -> bool:
    """Whether ``detector``'s scores are -log p-values of a model of its own (``log_p_scores``): their calibrator
    takes that model's tail beyond its sample (see :class:`Calibrator`)."""
    return bool(getattr(detector, "log_p_scores", False))


def combine(p_values: np.ndarray, method: str = "cauchy") -> np.ndarray:
    """Return the ``(n,)`` combined statistic of ``(n, k)`` p-values, in single precision (as float64); higher =
    more anomalous.

    ``cauchy``: the Cauchy combination ``mean(tan((0.5 - p) pi))`` (Liu & Xie, 2020),
    valid under the strong dependence between detectors that look at the same data and
    driven by the smallest p-values. ``bonferroni``: ``-log10(k * min p)``. Either way the
    statistic is calibrated again on held-out data (see :class:`Calibrator`), so the
    final p-value does not rely on the combination being exact.
    """
    p = np.minimum(np.maximum(np.asarray(p_values, dtype=np.float64), P_FLOOR), 1.0)  # (np.clip, faster)
    if p.ndim != 2:
        raise ValueError(f"p_values must have shape (n, detectors), got {p.shape}")
    if method == "cauchy":
        # p = 1 maps to -1.6e16: one detector that sees nothing would outvote three at 1e-12.
        # Capped at CAUCHY_CEILING it weighs -31.8, a full normal point's worth, and no more.
        # (the mean as np.mean takes it, a sum over the count, without its 7 us of checks a live point)
        statistic = np.add.reduce(np.tan((0.5 - np.minimum(p, CAUCHY_CEILING)) * np.pi), axis=1) / p.shape[1]
    elif method == "bonferroni":
        statistic = -np.log10(np.minimum(p.shape[1] * p.min(axis=1), 1.0))
    else:
        raise ValueError(f"combine method must be one of {COMBINERS}, got {method!r}")
    # in single precision, as raw scores are made (see single_precision), so that the combination's calibration
    # samples are too: many series hold them in a single-precision table (memory), and a statistic equal to a
    # sample value stays equal to it there (ties are common: quantised series give equal p-values)
    return single_precision(statistic)


MIN_EMPIRICAL = 1000  # a combined calibrator with fewer samples gives way to the analytic p-value
IMPLAUSIBLE = 0.01  # chance that plausibly_normal drops any point of a truly normal sample


def plausibly_normal(p_detectors: np.ndarray, level: float = IMPLAUSIBLE) -> np.ndarray:
    """Return ``(n,)`` bool: the rows of ``(n, k)`` detector p-values that a normal point could give.

    For normal points each of the ``n k`` p-values is about uniform (or larger: the fitted
    tails err that way), so all of them stay at or above ``level / (n k)`` with probability
    about ``1 - level`` (Bonferroni). A row below is an anomaly the sample held unlabelled
    (a flatline no detector in use had flagged, so adaptation admitted it). Left in the
    sample that calibrates the combined statistic, a dozen such points among thousands
    fatten its tail until nothing crosses the threshold: measured on the simulator, a refit
    calibrated on one flatline missed the next anomalies with detector p-values of 1e-5.
    When more than half the rows fall below, they are this sample's normal, and all are kept.
    """
    p_detectors = np.asarray(p_detectors, dtype=np.float64)
    plausible = p_detectors.min(axis=1, initial=1.0) >= level / max(p_detectors.size, 1)
    return plausible if 2 * plausible.sum() >= len(plausible) else np.ones(len(plausible), dtype=bool)


def analytic_p_value(statistic: np.ndarray, method: str, k: int) -> np.ndarray:
    """Return the combination's own p-value of :func:`combine`'s statistic for ``k`` detectors.

    ``cauchy``: ``1/2 - arctan(T)/pi``. It is valid for independent p-values, exact when
    they are all equal (perfect dependence), and approximately valid between (Liu & Xie,
    2020). ``bonferroni``: ``min(k min p, 1)``. Used where too few held-out points exist to
    calibrate the statistic: an empirical tail at 1e-3 needs thousands.
    """
    statistic = np.asarray(statistic, dtype=np.float64)
    if method == "cauchy":
        p = 0.5 - np.arctan(statistic) / np.pi
    elif method == "bonferroni":
        p = 10.0 ** -statistic
    else:
        raise ValueError(f"combine method must be one of {COMBINERS}, got {method!r}")
    return np.clip(p, P_FLOOR, 1.0)


def anomaly_score(p_value: np.ndarray, alpha: float) -> np.ndarray:
    """Return scores in ``[0, 1)`` that fall as ``p_value`` rises and equal 0.5 at ``alpha``.

    ``score = L / (L + L_alpha)`` with ``L = -log10 p``: 0 for p = 1, 0.5 at the alarm
    threshold, approaching 1 as evidence grows, on a log scale people can read.
    """
    evidence = -np.log10(np.clip(np.asarray(p_value, dtype=np.float64), P_FLOOR, 1.0))
    return evidence / (evidence - np.log10(alpha))


def taught_calibrator(sample: np.ndarray, taught: np.ndarray, alpha: float, rounds: int = 8,
                      cautious: bool = True, unit_tail: bool = False) -> Calibrator:
    """Return a calibrator fitted on normal ``sample`` scores plus ``taught`` ones: points a person marked normal.

    A false alarm marked by a person is a normal point the sample did not represent. Each
    taught score is repeated until every one of them gets a p-value of at least ``2 alpha``
    (twice the alarm threshold), doubling the copies for at most ``rounds`` fits: the same
    pattern at the same strength then stops alerting, while a clearly stronger one still
    does. ``taught`` empty gives the plain calibrator of ``sample``. ``unit_tail``: see :class:`Calibrator`.
    """
    sample = np.asarray(sample, dtype=np.float64)
    taught = np.asarray(taught, dtype=np.float64)
    taught = taught[np.isfinite(taught)]
    if len(taught) == 0:
        return Calibrator(cautious=cautious, unit_tail=unit_tail).fit(sample)
    # w copies of a score s give it p >= w / N with N = len(sample) + w len(taught)
    copies = max(1, int(np.ceil(2 * alpha * len(sample) / max(1 - 2 * alpha * len(taught), 0.5))))
    for _ in range(rounds):
        calibrator = Calibrator(cautious=cautious, unit_tail=unit_tail).fit(
            np.concatenate([sample, np.repeat(taught, copies)]))
        if calibrator.p_value(taught).min() >= 2 * alpha:
            break
        copies *= 2
    return calibrator
