"""Offline training: history -> fitted, calibrated ensemble and a report of what it promises.

The history is split in time order into four parts: detectors learn on the first,
per-detector calibrators on the second, the calibrator of the combined statistic on the
third, and the fourth (never seen before) measures the false-alarm rate we promise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import detectors as registry
from .calibration import Calibrator, combine
from .config import Config
from .ensemble import Ensemble
from .seasonality import detect_period
from .windows import Scaler, TimeGrid, phases, sliding

logger = logging.getLogger(__name__)

MIN_POINTS = 200
MAX_GAP_FRACTION = 0.1


@dataclass(frozen=True)
class Regular:
    """A history on its regular grid: consecutive positions, gaps filled by interpolation."""

    grid: TimeGrid
    positions: np.ndarray  # (n,) int64, consecutive
    values: np.ndarray  # (n,) float64
    filled: int  # grid points that were missing and interpolated
    dropped: int  # duplicate or out-of-order rows removed


def regularize(timestamps: np.ndarray, values: np.ndarray) -> Regular:
    """Put a history onto its sampling grid, or raise ``ValueError`` saying what to fix.

    Rows are sorted by time, duplicate timestamps keep their last value, and missing grid
    points are linearly interpolated (at most 10% of them).
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(values) < MIN_POINTS:
        raise ValueError(f"training needs at least {MIN_POINTS} points, got {len(values)}; "
                         "give a longer history (or a larger --head)")
    if not np.isfinite(values).all():
        raise ValueError("training values contain NaN or infinity; clean or drop those rows")
    order = np.argsort(timestamps, kind="stable")
    timestamps, values = timestamps[order], values[order]
    keep = np.append(np.diff(timestamps) > 0, True)  # last row of each timestamp wins
    dropped = int((~keep).sum()) + int((np.diff(order) < 0).sum())
    timestamps, values = timestamps[keep], values[keep]
    grid = TimeGrid.infer(timestamps)
    positions = grid.positions(timestamps)
    positions, first = np.unique(positions, return_index=True)
    values = values[first]
    full = np.arange(positions[0], positions[-1] + 1)
    filled = len(full) - len(positions)
    if filled > MAX_GAP_FRACTION * len(full):
        raise ValueError(f"{filled} of {len(full)} points are missing from the sampling grid "
                         f"(one every {grid.interval:g} s); at most {MAX_GAP_FRACTION:.0%} may be missing: "
                         f"train on a stretch with fewer gaps (--head, or cut the file)")
    if np.ptp(values) == 0:
        raise ValueError("training values are all equal: a constant series has nothing to learn; check "
                         "--value-column, or train on a stretch where the metric moves")
    return Regular(grid, full, np.interp(full, positions, values), filled, dropped)


def split_points(n: int, config: Config) -> tuple[int, int, int]:
    """Return the end indices of the train, detector-calibration and ensemble-calibration parts."""
    c = config.calibration
    fractions = (c.train_fraction, c.detector_cal_fraction, c.ensemble_cal_fraction)
    if min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError("calibration fractions must be positive and leave room for validation")
    cuts = np.cumsum(fractions) * n
    return int(cuts[0]), int(cuts[1]), int(cuts[2])


def train(timestamps: np.ndarray, values: np.ndarray, config: Config,
          seed: int | None = None) -> tuple[Ensemble, dict]:
    """Fit and calibrate an ensemble on a normal history; return it and its report.

    The report (a dict for the run's manifest) holds the period, part sizes, fit times and
    the false-alarm rate measured on the validation part (``measured_far``).
    """
    seed = config.training.seed if seed is None else seed
    started = time.perf_counter()
    data = regularize(timestamps, values)
    n = len(data.values)
    end_train, end_det, end_ens = split_points(n, config)
    scaler = Scaler.fit(data.values[:end_train])
    scaled = scaler.transform(data.values)
    period = config.training.period or detect_period(scaled[:end_train], interval=data.grid.interval)
    logger.info("%d points every %g s; seasonal period %s", n, data.grid.interval,
                f"{period} points" if period else "none found")

    fit_seconds = {}
    detectors = {}
    for name in config.detectors.enabled:
        detector = registry.build(name, config, period, seed)
        if end_train < detector.window + 10:
            raise ValueError(f"the training part ({end_train} points) is too short for {name}'s "
                             f"window of {detector.window}; give a longer history")
        tic = time.perf_counter()
        windows = sliding(scaled[:end_train], detector.window)
        detector.fit(windows, phases(data.positions[detector.window - 1:end_train], period))
        fit_seconds[name] = round(time.perf_counter() - tic, 2)
        logger.info("fitted %-8s in %5.1f s", name, fit_seconds[name])
        detectors[name] = detector

    ensemble = Ensemble(detectors, scaler, data.grid, period, config.calibration.target_far,
                        config.calibration.combine)
    if end_train < ensemble.window:
        raise ValueError(f"history too short: the first part needs {ensemble.window} points")

    def part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:  # points lo..hi-1 with history
        first = lo - ensemble.window + 1
        return scaled[first:hi], data.positions[first:hi]

    raw = ensemble.raw_scores(*part(end_train, end_det))
    ensemble.calibrators_ = {name: Calibrator().fit(raw[:, i]) for i, name in enumerate(ensemble.names)}
    p_ens = ensemble.detector_p_values(ensemble.raw_scores(*part(end_det, end_ens)))
    ensemble.combined_ = Calibrator().fit(combine(p_ens, ensemble.combine))
    validation = ensemble.decide(*part(end_ens, n))
    flagged = int(validation.is_anomaly.sum())
    report = {
        "points": n, "interval_s": data.grid.interval, "period": period,
        "filled_gaps": data.filled, "dropped_rows": data.dropped,
        "parts": {"train": end_train, "detector_calibration": end_det - end_train,
                  "ensemble_calibration": end_ens - end_det, "validation": n - end_ens},
        "target_far": config.calibration.target_far,
        "measured_far": flagged / len(validation.is_anomaly),
        "validation_flags": flagged,
        "fit_seconds": fit_seconds,
        "train_seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    logger.info("false-alarm rate on %d held-out validation points: %.2g (target %.2g)",
                n - end_ens, report["measured_far"], report["target_far"])
    return ensemble, report
