"""Offline training: history -> fitted, calibrated ensemble and a report of what it promises.

The history is split in time order into four parts: detectors learn on the first,
per-detector calibrators on the second, the calibrator of the combined statistic on the
third, and the fourth (never seen before) measures the false-alarm rate we promise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import progress
from ..config import Config
from ..feedback import Label
from ..feedback import mask as feedback_mask
from . import detectors as registry
from .calibration import MIN_EMPIRICAL, plausibly_normal, taught_calibrator, unit_tail
from .ensemble import Ensemble
from .novelty import record_range
from .seasonality import detect_period
from .warp import WARPS, Warp, candidates, choose_warp
from .windows import Scaler, TimeGrid, phases, sliding

logger = logging.getLogger(__name__)

MIN_POINTS = 100
MAX_GAP_FRACTION = 0.1  # more missing grid points than this: sequence mode (see windows.TimeGrid)
MIN_CALIBRATION = 10  # points each calibration part needs once excluded and implausible points are left out
MIN_WINDOW = 8  # the shortest detector window, for the shortest histories
MAX_FILL_FACTOR = 50  # a sequence is put on its grid (period, profile) only while that grid is at most 50x its points


@dataclass(frozen=True)
class Regular:
    """A history on its regular grid: consecutive positions, gaps filled by interpolation."""

    grid: TimeGrid
    positions: np.ndarray  # (n,) int64, consecutive (in sequence mode: each point's own, non-decreasing)
    values: np.ndarray  # (n,) float64
    filled: int  # grid points that were missing and interpolated
    dropped: int  # duplicate or out-of-order rows removed
    excluded: np.ndarray  # (n,) bool: points that must not teach (interpolated over, like gaps)

    @property
    def sequence(self) -> bool:
        """Whether the points are taken one after the other, off the grid (see :class:`TimeGrid`)."""
        return self.grid.sequence

    def on_grid(self, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the positions and values of the first ``stop`` points filled onto the full grid.

        The same points in grid mode; in sequence mode, the holes between them are interpolated
        (for what needs a regular series: period detection, the seasonal profile).
        """
        positions, values = self.positions[:stop], self.values[:stop]
        if not self.sequence:
            return positions, values
        known, first = np.unique(positions, return_index=True)  # points closer than a step share a position
        if known[-1] - known[0] + 1 > MAX_FILL_FACTOR * len(known):  # too sparse to fill: as they come
            return known, values[first]
        full = np.arange(known[0], known[-1] + 1)
        return full, np.interp(full, known, values[first])


def regularize(timestamps: np.ndarray, values: np.ndarray, grid: TimeGrid | None = None,
               exclude: np.ndarray | None = None) -> Regular:
    """Put a history onto its sampling grid, or raise ``ValueError`` saying what to fix.

    Rows are sorted by time, duplicate timestamps keep their last value, and missing grid
    points are linearly interpolated. When more than 10% of the grid is missing (irregular
    sampling), nothing is made up: the points are kept as they are, in sequence mode (see
    :class:`TimeGrid`). ``grid``: the grid to use (a refit keeps its stream's); ``None``
    infers it. ``exclude``: ``(n,)`` rows that must not teach (labelled anomalies, points a
    stream judged anomalous); they are interpolated over, but do not count as missing, and
    :attr:`Regular.excluded` marks them.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    exclude = np.zeros(len(values), dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    if len(values) < MIN_POINTS:
        raise ValueError(f"training needs at least {MIN_POINTS} points, got {len(values)}; "
                         "give a longer history (or a larger --head)")
    if not np.isfinite(values).all():
        raise ValueError("training values contain NaN or infinity; clean or drop those rows")
    order = np.argsort(timestamps, kind="stable")
    timestamps, values, exclude = timestamps[order], values[order], exclude[order]
    keep = np.append(np.diff(timestamps) > 0, True)  # last row of each timestamp wins
    dropped = int((~keep).sum()) + int((np.diff(order) < 0).sum())
    timestamps, values, exclude = timestamps[keep], values[keep], exclude[keep]
    if exclude.all():
        raise ValueError("every training row is labelled anomalous: nothing normal is left to learn from")
    grid = grid or TimeGrid.infer(timestamps)
    positions = grid.positions(timestamps)
    unique = np.unique(positions)
    missing = int(unique[-1] - unique[0] + 1 - len(unique))
    if grid.sequence or missing > MAX_GAP_FRACTION * (unique[-1] - unique[0] + 1):
        sequence = grid.as_sequence()
        if not grid.sequence:
            logger.info("%d of %d points are missing from the sampling grid (one every %g s): sequence mode, "
                        "the points are taken as they come", missing, unique[-1] - unique[0] + 1, grid.interval)
        index = np.arange(len(values))
        values = np.interp(index, index[~exclude], values[~exclude])
        return Regular(sequence, positions, values, 0, dropped, exclude)
    positions, first = np.unique(positions, return_index=True)
    values, exclude = values[first], exclude[first]
    full = np.arange(positions[0], positions[-1] + 1)
    filled = len(full) - len(positions)
    excluded = np.zeros(len(full), dtype=bool)
    excluded[positions[exclude] - full[0]] = True
    positions, values = positions[~exclude], values[~exclude]
    return Regular(grid, full, np.interp(full, positions, values), filled, dropped, excluded)


def split_points(n: int, config: Config) -> tuple[int, int, int]:
    """Return the end indices of the train, detector-calibration and ensemble-calibration parts."""
    c = config.calibration
    fractions = (c.train_fraction, c.detector_cal_fraction, c.ensemble_cal_fraction)
    if min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError("calibration fractions must be positive and leave room for validation")
    cuts = np.cumsum(fractions) * n
    return int(cuts[0]), int(cuts[1]), int(cuts[2])


@dataclass(frozen=True)
class Prepared:
    """A history made ready to learn from: on its grid, scaled, its period found, split in four parts."""

    data: Regular
    scaler: Scaler
    scaled: np.ndarray  # (n,) the history in scaled units
    period: int
    config: Config  # with the windows fitted to the history (see fitted_windows)
    splits: tuple[int, int, int]  # ends of the train, detector-calibration and ensemble-calibration parts


def prepare(timestamps: np.ndarray, values: np.ndarray, config: Config, excluded: np.ndarray,
            period: int | None = None, grid: TimeGrid | None = None) -> Prepared:
    """Put a history on its grid, scale it and find its period; raise ``ValueError`` when it is unusable."""
    data = regularize(timestamps, values, grid, excluded)
    n = len(data.values)
    end_train, end_det, end_ens = split_points(n, config)
    clean = data.values[:end_train][~data.excluded[:end_train]]
    clean = clean if len(clean) >= MIN_POINTS // 2 else data.values[:end_train]
    scaler = Scaler.fit(clean, chosen_warp(config.training.warp, clean))
    if np.ptp(data.values[~data.excluded]) == 0:
        logger.warning("the history is constant: any change will be flagged")
    if period is None:
        period = config.training.period or detect_period(
            scaler.transform(data.on_grid(end_train)[1]), interval=data.grid.interval)
    logger.info("%d points every %g s%s; seasonal period %s%s", n, data.grid.interval,
                " (sequence mode)" if data.sequence else "", f"{period} points" if period else "none found",
                "" if scaler.warp == "none" else f"; values warped by {scaler.warp}(x + {scaler.offset:.3g})")
    return Prepared(data, scaler, scaler.transform(data.values), period, fitted_windows(config, end_train, period),
                    (end_train, end_det, end_ens))


def training_windows(prepared: Prepared, detector, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the windows (and their phases) ``detector`` learns from in the train part of ``prepared``.

    A shape learner sees only the windows free of excluded points; a consecutive learner
    (S-H-ESD) sees them all, in order, on the full grid.
    """
    data, period, end_train = prepared.data, prepared.period, prepared.splits[0]
    if end_train < detector.window + 10:
        raise ValueError(f"the training part ({end_train} points) is too short for {name}'s "
                         f"window of {detector.window}; give a longer history")
    windows = sliding(prepared.scaled[:end_train], detector.window)
    phase = phases(data.positions[detector.window - 1:end_train], period)
    if getattr(detector, "consecutive_fit", False) and data.sequence:  # a seasonal profile needs the grid
        positions, grid_values = data.on_grid(end_train)
        windows = sliding(prepared.scaler.transform(grid_values), detector.window)
        phase = phases(positions[detector.window - 1:], period)
    if not getattr(detector, "consecutive_fit", False):  # shape learners: only clean windows
        keep = ~touched(data.excluded[:end_train], detector.window)[detector.window - 1:]
        if keep.sum() < 10:
            raise ValueError(f"too few training windows for {name} are free of excluded points "
                             f"({int(keep.sum())}); give a longer history")
        windows, phase = windows[keep], (phase[keep] if phase is not None else None)
    return windows, phase


def _fitted(name: str, detector, windows: np.ndarray, phase: np.ndarray | None, fit_seconds: dict):
    tic = time.perf_counter()
    detector.fit(windows, phase)
    fit_seconds[name] = round(time.perf_counter() - tic, 2)
    logger.info("fitted %-8s in %5.1f s", name, fit_seconds[name])
    return detector


def train(timestamps: np.ndarray, values: np.ndarray, config: Config, seed: int | None = None, *,
          labels: list[Label] | None = None, exclude: np.ndarray | None = None,
          period: int | None = None, grid: TimeGrid | None = None) -> tuple[Ensemble, dict]:
    """Fit and calibrate an ensemble on a normal history; return it and its report.

    The report (a dict for the run's manifest) holds the period, part sizes, fit times and
    the false-alarm rate measured on the validation part (``measured_far``).

    ``labels`` (:mod:`anomaly.feedback`): stretches labelled ``anomaly`` never teach (the
    shape learners skip every window touching them; calibration skips those points);
    those labelled ``false_alarm`` are taught as normal to calibration. ``exclude``:
    ``(n,)`` more rows that must not teach. ``period`` and ``grid`` fix the seasonal period
    and time grid (a refit keeps its stream's); ``None`` finds them from the data.
    """
    seed = config.training.seed if seed is None else seed
    started = time.perf_counter()
    labels = labels or []
    exclude = np.zeros(len(values), dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    with progress.task("training", total=3 + len(config.ensemble.detectors)):
        with progress.stage("checking the data"):
            prepared = prepare(timestamps, values, config, exclude | feedback_mask(labels, timestamps, "anomaly"),
                               period, grid)
        detectors, fit_seconds = fit_detectors(prepared, prepared.config.ensemble.detectors, seed)
        return calibrated(prepared, detectors, labels, fit_seconds, started)


def fit_detectors(prepared: Prepared, names, seed: int) -> tuple[dict, dict[str, float]]:
    """Fit the detectors ``names`` on the train part of ``prepared``; return them and their fit seconds."""
    detectors, fit_seconds = {}, {}
    for name in names:
        with progress.stage(f"fitting {name}"):
            detector = registry.build(name, prepared.config, prepared.period, seed)
            detectors[name] = _fitted(name, detector, *training_windows(prepared, detector, name), fit_seconds)
    return detectors, fit_seconds


def train_pooled(histories: dict[str, tuple[np.ndarray, np.ndarray]], config: Config, seed: int | None = None,
                 max_windows: int = 200_000, workers: int | None = None
                 ) -> tuple[dict[str, Ensemble], dict[str, dict], dict[str, str]]:
    """Train many series at once: the shape learners on all series' windows, the rest on each series alone.

    The shape learners (:data:`~anomaly.model.detectors.SHAPE_LEARNERS`: the autoencoders, the
    forest, ...) learn once, on the pooled windows of every series, each scaled by its own
    series (shape, not level), without phase (each series has its own period); at most
    ``max_windows`` windows, drawn evenly from every series. Each series keeps its own
    scaler, grid, period, seasonal and forecasting detectors and calibration, fitted on its
    own parts, so that the false-alarm rate holds per series. The series' own detectors are
    fitted in ``workers`` processes (``None``: one per core). Returns the ensembles (sharing
    the pooled detectors), each series' report, and the series that could not be trained
    with the reason.
    """
    seed = config.training.seed if seed is None else seed
    workers = (os.cpu_count() or 1) if workers is None else workers
    pooled_names = [name for name in config.ensemble.detectors if name in registry.SHAPE_LEARNERS]
    with progress.task("training", total=2 * len(histories) + len(pooled_names)) as bar:
        prepared, untrained = {}, {}
        with progress.muted():
            for key, (timestamps, values) in histories.items():
                bar.advance(1, f"checking series {key}")
                try:
                    prepared[key] = prepare(timestamps, values, config, np.zeros(len(values), dtype=bool))
                except ValueError as exc:
                    untrained[key] = str(exc)
        if not prepared:
            return {}, {}, untrained
        window = min(p.config.windows.size for p in prepared.values())  # one window that every series can fill
        shared_config = dataclasses.replace(config, windows=dataclasses.replace(config.windows, size=window))
        pooled, pooled_seconds = {}, {}
        for name in pooled_names:
            with progress.stage(f"fitting {name} on all series"):
                detector = registry.build(name, shared_config, 0, seed)
                parts, per_series = [], max(max_windows // len(prepared), 10)
                for key, one in list(prepared.items()):
                    try:
                        windows, _ = training_windows(one, detector, name)
                    except ValueError as exc:
                        untrained[key] = str(exc)
                        del prepared[key]
                        continue
                    step = max(len(windows) // per_series, 1)
                    parts.append(windows[::step][:per_series])
                if not parts:
                    return {}, {}, untrained
                pooled[name] = _fitted(name, detector, np.concatenate(parts), None, pooled_seconds)
        own_names = [name for name in config.ensemble.detectors if name not in pooled]
        jobs = [(one, own_names, seed) for one in prepared.values()]
        ensembles, reports = {}, {}
        bar.advance(len(histories) - len(prepared), "")  # the series left out count as done
        with progress.muted():
            for key, (own, fit_seconds, why) in zip(list(prepared), _each(_own_detectors, jobs, workers)):
                bar.advance(1, f"series {key}")
                if why:
                    untrained[key] = why
                    continue
                started = time.perf_counter()
                detectors = {name: pooled[name] if name in pooled else own[name] for name in config.ensemble.detectors}
                try:
                    ensembles[key], reports[key] = calibrated(prepared[key], detectors, [],
                                                              {**pooled_seconds, **fit_seconds}, started)
                except ValueError as exc:
                    untrained[key] = str(exc)
    return ensembles, reports, untrained


def _own_detectors(job) -> tuple[dict, dict, str]:
    """Fit one series' own detectors (seasonal, forecasting); return them, their fit seconds, and why not ("")."""
    one, names, seed = job
    try:
        return *fit_detectors(one, names, seed), ""
    except ValueError as exc:
        return {}, {}, str(exc)


def _each(function, jobs: list, workers: int):
    """Yield ``function`` of every job, in order, as each is done: in ``workers`` processes when there are
    enough jobs to pay for starting them (statsmodels' fits hold the GIL: threads would take turns)."""
    if workers <= 1 or len(jobs) < 4 * workers:
        yield from map(function, jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(function, jobs, chunksize=max(1, len(jobs) // (8 * workers)))


def calibrated(prepared: Prepared, detectors: dict, labels: list[Label], fit_seconds: dict,
               started: float) -> tuple[Ensemble, dict]:
    """Calibrate fitted ``detectors`` on the held-out parts of ``prepared``; return the ensemble and its report."""
    data, scaler, scaled, period, config = (prepared.data, prepared.scaler, prepared.scaled, prepared.period,
                                            prepared.config)
    n = len(data.values)
    end_train, end_det, end_ens = prepared.splits
    ensemble = Ensemble(detectors, scaler, data.grid, period, config.calibration.target_far,
                        config.calibration.combine)
    ensemble.trend_ = trend(*data.on_grid(end_train), scaler, period)
    # (the stream's records are judged from here, warped: a new highest burst of many is no record by a baseline's step)
    ensemble.range_ = record_range(scaler.warped(data.values[~data.excluded]))
    if end_train < ensemble.window:
        raise ValueError(f"history too short: the first part needs {ensemble.window} points")
    tainted = touched(data.excluded, ensemble.window)  # points whose window holds an excluded one

    def part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:  # points lo..hi-1 with history
        first = lo - ensemble.window + 1
        return scaled[first:hi], data.positions[first:hi]

    progress.note("calibrating on held-out points")
    false_alarms = feedback_mask(labels, data.grid.timestamp(data.positions), "false_alarm")
    false_alarms[:ensemble.window - 1] = False  # a point needs a full window to be scored
    taught = (ensemble.raw_scores(scaled, data.positions)[false_alarms[ensemble.window - 1:]]
              if false_alarms.any() else np.empty((0, len(detectors))))
    alpha = config.calibration.target_far
    raw = ensemble.raw_scores(*part(end_train, end_det))[~tainted[end_train:end_det]]
    if len(raw) < MIN_CALIBRATION:
        raise ValueError("too few calibration points are free of excluded points; give a longer history")
    ensemble.calibrators_ = {name: taught_calibrator(raw[:, i], taught[:, i], alpha,
                                                     unit_tail=unit_tail(ensemble.detectors[name]))
                             for i, name in enumerate(ensemble.names)}
    p_ens = ensemble.detector_p_values(ensemble.raw_scores(*part(end_det, end_ens)))
    # an anomaly the history held unlabelled: no normal point gives such p-values; leave out every
    # point whose window holds one, as for excluded points (see plausibly_normal)
    clean = ~tainted[end_det:end_ens]
    implausible = np.zeros(len(p_ens), dtype=bool)
    implausible[clean] = ~plausibly_normal(p_ens[clean])
    p_ens = p_ens[clean & ~touched(implausible, ensemble.window)]
    if len(p_ens) < MIN_CALIBRATION:
        raise ValueError("too few points are left to calibrate the combined evidence once excluded points and "
                         "anomalies are set aside; give a longer or cleaner history")
    if implausible.any():
        logger.info("%d calibration points no normal point would give: left out with their windows",
                    int(implausible.sum()))
    statistic = ensemble.statistic(p_ens)
    taught_statistic = ensemble.statistic(ensemble.detector_p_values(taught)) \
        if len(statistic) >= MIN_EMPIRICAL else np.empty(0)  # below that, the analytic p-value decides
    # cautious as well: this calibrator maps the statistic back to the rate measured on held-out points, which
    # undoes the detectors' caution (measured on NAB: 30 flags per 10k normal points against 6 per detector)
    ensemble.combined_ = taught_calibrator(statistic, taught_statistic, alpha)
    progress.advance("measuring the false-alarm rate on validation points")
    validation = ensemble.decide(*part(end_ens, n))
    progress.advance("")
    validation_clean = ~tainted[end_ens:]
    flagged = int(validation.is_anomaly[validation_clean].sum())
    report = {
        "points": n, "interval_s": data.grid.interval, "period": period, "sequence": data.sequence,
        "window": config.windows.size,
        "warp": {"kind": scaler.warp, "offset": scaler.offset},
        "filled_gaps": data.filled, "dropped_rows": data.dropped, "excluded": int(data.excluded.sum()),
        "taught_false_alarms": int(false_alarms.sum()),
        "parts": {"train": end_train, "detector_calibration": end_det - end_train,
                  "ensemble_calibration": end_ens - end_det, "validation": n - end_ens},
        "target_far": config.calibration.target_far,
        "measured_far": flagged / max(int(validation_clean.sum()), 1),
        "validation_flags": flagged,
        "validation_points": int(validation_clean.sum()),
        "validation_start": float(data.grid.timestamp(data.positions[end_ens])),
        "fit_seconds": fit_seconds,
        "train_seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    logger.info("false-alarm rate on %d held-out validation points: %.2g (target %.2g)",
                n - end_ens, report["measured_far"], report["target_far"])
    return ensemble, report


def chosen_warp(setting: str, values: np.ndarray) -> Warp:
    """Return the warp ``setting`` (``TrainingConfig.warp``) asks for: chosen from the training ``values`` for
    ``auto``, else the one named (``sqrt`` and ``log`` with :func:`~anomaly.model.warp.candidates`' offset; none
    for values below 0)."""
    if setting == "auto":
        return choose_warp(values)
    if setting not in WARPS:
        raise ValueError(f"training.warp must be auto or one of {WARPS}, got {setting!r}")
    return next((warp for warp in candidates(values) if warp.kind == setting), Warp())


def trend(positions: np.ndarray, values: np.ndarray, scaler: Scaler, period: int) -> float:
    """Return the slope of a history on its grid, in scaled units per grid step.

    With three whole periods or more: the Theil-Sen slope (the median of the pairwise
    slopes) of the means of whole periods, so that the seasonal cycle cancels and an odd
    period does not count. Otherwise the least-squares slope.
    """
    from scipy.stats import theilslopes

    scaled = scaler.transform(values)
    if period >= 2 and len(scaled) >= 3 * period:
        means = scaled[:len(scaled) // period * period].reshape(-1, period).mean(axis=1)[-500:]
        return float(theilslopes(means).slope / period)
    return float(np.polyfit(positions - positions[0], scaled, 1)[0]) if len(scaled) >= 2 else 0.0


def fitted_windows(config: Config, train_points: int, period: int) -> Config:
    """Return ``config`` with detector windows that fit a training part of ``train_points`` points.

    A short history (down to ``MIN_POINTS`` rows) gets shorter windows, and so smaller
    models: at most a quarter of the training part each (S-H-ESD: half), never below
    ``MIN_WINDOW``. Long histories keep the configured windows.
    """
    size = min(config.windows.size, max(MIN_WINDOW, train_points // 4))
    shesd = min(registry.shesd_window(config, period), max(MIN_WINDOW, train_points // 2))
    if (size, shesd) == (config.windows.size, registry.shesd_window(config, period)):
        return config
    logger.info("a short history (%d training points): windows of %d points (S-H-ESD %d)", train_points, size, shesd)
    return dataclasses.replace(config, windows=dataclasses.replace(config.windows, size=size, shesd_size=shesd))


def touched(excluded: np.ndarray, window: int) -> np.ndarray:
    """Return ``(n,)`` bool: whether the ``window`` points ending at each point hold an excluded one."""
    counts = np.cumsum(np.concatenate([[0], np.asarray(excluded, dtype=np.int64)]))
    ends = np.arange(1, len(excluded) + 1)
    return counts[ends] - counts[np.maximum(ends - window, 0)] > 0
