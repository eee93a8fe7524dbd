"""The calibrated ensemble: detectors + per-detector calibrators + combiner + threshold.

Scoring a block of points runs every detector once on all their windows (vectorised,
through each detector's consecutive-series path), so streaming, training and offline
evaluation share one code path.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import (MIN_EMPIRICAL, Calibrator, analytic_p_value, anomaly_score, combined_statistic,
                          evidence_columns, single_precision, with_alone)
from .detectors import REGISTRY, Detector
from .detectors.base import score_consecutive
from .rolling import rolling_median_mad
from .windows import Scaler, TimeGrid, phases

PART = 2048  # most points per scoring task
MIN_PART = 256  # fewest points per scoring task (ONNX Runtime batches well from here)
PARALLEL_FROM = 256  # blocks this large are scored on all cores; a live point stays on one thread
SCALED_LIMIT = 1e6  # |scaled value| beyond which a point is anomalous outright (float32 networks would overflow)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """One scoring thread per core: ONNX Runtime and the compiled kernels release the GIL.

    ``ANOMALY_SCORING_THREADS=N`` caps them (inside an engine that runs a task per core, one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = int(os.environ.get("ANOMALY_SCORING_THREADS", "0") or 0)
    return ThreadPoolExecutor(max_workers=min(cores or 2, cap) if cap > 0 else cores or 2,
                              thread_name_prefix="anomaly-score")


@dataclass
class Decisions:
    """Per-point results of a block, all arrays of length n (one entry per scored point)."""

    raw: np.ndarray  # (n, k) each detector's raw score (what calibration maps to p_detectors)
    p_detectors: np.ndarray  # (n, k) calibrated p-value of each detector
    p_value: np.ndarray  # (n,) calibrated p-value of the combined evidence
    score: np.ndarray  # (n,) in [0, 1), 0.5 at the alarm threshold
    is_anomaly: np.ndarray  # (n,) bool: p_value < alpha
    expected: np.ndarray  # (n,) expected value, in the series' units
    spread: np.ndarray  # (n,) typical deviation around it (1 sd), in the series' units


class Ensemble:
    """Detectors whose calibrated p-values are combined into one decision per point.

    ``alpha`` is the threshold on the final p-value and equals the target false-alarm
    rate: the final p-value is itself calibrated on held-out normal data.
    """

    def __init__(self, detectors: dict[str, Detector], scaler: Scaler, grid: TimeGrid,
                 period: int, target_far: float = 1e-3, combine: str = "cauchy"):
        if not 0 < target_far < 0.5:
            raise ValueError(f"target_far must be in (0, 0.5), got {target_far}")
        self.detectors = detectors
        # the detectors whose p-values are combined, and those whose evidence stands alone (see evidence_columns)
        self.combined_columns, self.alone_columns = evidence_columns(detectors.values())
        self.scaler = scaler
        self.grid = grid
        self.period = period
        self.target_far = target_far
        self.combine = combine
        self.calibrators_: dict[str, Calibrator] = {}
        self.combined_: Calibrator | None = None
        self.trend_ = 0.0  # the history's slope, scaled units per grid step: a drift it showed is no change
        # (low, high, seen, step) of the history's values, warped (see Scaler.warped): where a stream's range of
        # values seen starts (see anomaly.model.novelty); None: no record evidence (a run saved before it)
        self.range_: tuple[float, float, int, float] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.detectors)

    @property
    def alpha(self) -> float:
        return self.target_far

    @property
    def window(self) -> int:
        """Points of history a decision needs: the longest detector window."""
        return max(d.window for d in self.detectors.values())

    @property
    def shortest_window(self) -> int:
        """Points of history the shortest detector window spans: flags linger this long after an event."""
        return min(d.window for d in self.detectors.values())

    def raw_scores(self, scaled: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Return ``(n - window + 1, k)`` raw scores of the points that have a full window.

        ``scaled`` and ``positions`` are ``(n,)`` consecutive points; row ``j`` belongs to
        point ``j + window - 1``.
        """
        return np.column_stack(self._score_all(scaled, positions)[0])

    def _tail(self, scaled: np.ndarray, positions: np.ndarray, window: int, longest: int):
        """Return the points and phases a detector of ``window`` needs for the decidable points (``longest``: the
        ensemble's window)."""
        start = longest - window
        phase = phases(positions[start:], self.period)
        return scaled[start:], phase

    def detector_p_values(self, raw: np.ndarray) -> np.ndarray:
        """Return ``(n, k)`` per-detector p-values of raw scores ``(n, k)``."""
        return np.column_stack([self.calibrators_[name].p_value(raw[:, i])
                                for i, name in enumerate(self.names)])

    def decide(self, scaled: np.ndarray, positions: np.ndarray) -> Decisions:
        """Score every point of ``scaled`` that has a full window (see :meth:`raw_scores`).

        A point more than ``SCALED_LIMIT`` spreads from the center is anomalous whatever the
        detectors say: they see it clipped there, and a run of such values looks flat to them.
        """
        if self.combined_ is None:
            raise RuntimeError("Ensemble: not calibrated; train it with anomaly.model.training.train()")
        beyond = ~(np.abs(scaled[self.window - 1:]) < SCALED_LIMIT)
        scaled = np.clip(scaled, -SCALED_LIMIT, SCALED_LIMIT)
        columns, expected = self._score_all(scaled, positions)
        center, spread = expected if expected is not None else self._rolling_band(scaled)
        raw = np.column_stack(columns)
        p_detectors = self.detector_p_values(raw)
        p_value = self.combined_p_value(p_detectors)
        if beyond.any():
            p_value = np.where(beyond, np.finfo(float).tiny, p_value)
        expected = self.scaler.inverse(center)
        return Decisions(raw, p_detectors, p_value, anomaly_score(p_value, self.alpha), p_value < self.alpha,
                         expected, self.scaler.spread(expected, spread))

    def _score_all(self, scaled: np.ndarray, positions: np.ndarray):
        """Return each detector's raw scores of the decidable points, and the expected band, if any.

        The band (center, spread) comes from the first detector that states one with its
        scores (``series_stats``, S-H-ESD's seasonal model). Large blocks are cut into parts of
        ``PART`` points and the (detector, part) tasks run on one thread per core: every kernel
        is single-threaded and releases the GIL.
        """
        longest = self.window  # (a property: worked out once here)
        n = len(scaled) - longest + 1
        # parts small enough that the slowest detector's work spreads over every core (a block of
        # 1024 points in one part each left a core idle while the LSTM ran), large enough to batch
        size = int(np.clip(-(-n // (2 * _pool()._max_workers)), MIN_PART, PART))
        parts = [(lo, min(lo + size, n)) for lo in range(0, n, size)]

        def task(job):
            name, (lo, hi) = job
            detector = self.detectors[name]
            values, phase = self._tail(scaled[lo:hi + longest - 1], positions[lo:hi + longest - 1], detector.window,
                                       longest)
            if hasattr(detector, "series_stats"):  # one rolling pass: scores and the expected band
                return detector.series_stats(values, phase)
            return score_consecutive(detector, values, phase)

        jobs = [(name, part) for name in self.names for part in parts]
        parallel = n >= PARALLEL_FROM and _pool()._max_workers > 1
        results = dict(zip(jobs, _pool().map(task, jobs) if parallel else map(task, jobs)))
        columns, expected = [], None
        for name in self.names:
            pieces = [results[name, part] for part in parts]
            if hasattr(pieces[0], "center"):
                columns.append(np.concatenate([p.score for p in pieces]))
                if expected is None:
                    expected = np.concatenate([p.center for p in pieces]), np.concatenate([p.spread for p in pieces])
            else:
                columns.append(np.concatenate(pieces))
        return [single_precision(column) for column in columns], expected

    def statistic(self, p_detectors: np.ndarray) -> np.ndarray:
        """Return the ``(n,)`` combined statistic of the p-values ``(n, k)`` of the detectors that are combined (see
        :func:`~anomaly.model.calibration.evidence_columns`): what the combined calibrator is fitted on."""
        return combined_statistic(p_detectors, self.combined_columns, self.alone_columns, self.combine)

    def combined_p_value(self, p_detectors: np.ndarray) -> np.ndarray:
        """Return the ``(n,)`` p-value of the detectors' combined evidence ``(n, k)``.

        Calibrated on held-out normal data when the calibrator saw enough of it (a short
        history, or a young adaptation, does not), else the combination's own p-value; lowered
        to the p-value of a detector whose evidence stands alone where that is smaller.
        """
        statistic = self.statistic(p_detectors)
        if self.combined_.size < MIN_EMPIRICAL:
            p_value = analytic_p_value(statistic, self.combine, len(self.combined_columns))
        else:
            p_value = self.combined_.p_value(statistic)
        return with_alone(p_value, p_detectors, self.alone_columns)

    def deseasoned(self, timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Return values scaled, without the seasonal profile (S-H-ESD's) and the history's trend.

        This is the level drift is watched on: a trend the training history already showed
        is not a change.
        """
        positions = self.grid.positions(timestamps)
        scaled = self.scaler.transform(values) - self.trend_ * positions
        shesd = self.detectors.get("shesd")
        phase = phases(positions, self.period)
        if shesd is None or phase is None:
            return scaled
        return scaled - shesd.profile_[phase]

    def _rolling_band(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected value and spread without S-H-ESD: the rolling median and MAD (scaled units)."""
        center, mad = rolling_median_mad(scaled, self.window)
        return center, 1.4826 * mad

    # persistence: config and calibration as JSON/npz, detectors in their native formats
    def save(self, directory: Path, shared: frozenset[str] = frozenset()) -> None:
        """Write the ensemble into ``directory`` (which must not be in use).

        ``shared``: detectors saved elsewhere, once for many ensembles (a run of many series):
        named in ``ensemble.json`` and handed back to :meth:`load`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"detectors": self.names, "scaler": self.scaler.to_dict(), "grid": self.grid.to_dict(),
                "period": self.period, "target_far": self.target_far, "combine": self.combine, "trend": self.trend_,
                "range": None if self.range_ is None else dict(zip(("low", "high", "seen", "step"), self.range_)),
                "shared": sorted(shared & set(self.names))}
        (directory / "ensemble.json").write_text(json.dumps(meta, indent=2))
        arrays = {f"{name}.{key}": value for name, cal in self.calibrators_.items()
                  for key, value in cal.to_arrays().items()}
        arrays.update({f"_combined.{k}": v for k, v in self.combined_.to_arrays().items()})
        np.savez(directory / "calibration.npz", **arrays)
        for name, detector in self.detectors.items():
            if name not in shared:
                detector.save(directory / "detectors" / name)

    @classmethod
    def load(cls, directory: Path, shared: dict | None = None) -> Ensemble:
        """Read an ensemble written by :meth:`save`; ``shared``: its shared detectors, by name, loaded once."""
        directory = Path(directory)
        meta = json.loads((directory / "ensemble.json").read_text())
        missing = set(meta.get("shared", [])) - set(shared or {})
        if missing:
            raise ValueError(f"{directory}: the shared detectors {sorted(missing)} were not given")
        detectors = {name: (shared[name] if name in meta.get("shared", []) else
                            REGISTRY[name].load(directory / "detectors" / name)) for name in meta["detectors"]}
        ensemble = cls(detectors, Scaler(**meta["scaler"]), TimeGrid(**meta["grid"]), meta["period"],
                       meta["target_far"], meta["combine"])
        ensemble.trend_ = float(meta.get("trend", 0.0))
        if meta.get("range") is not None:
            r = meta["range"]
            ensemble.range_ = float(r["low"]), float(r["high"]), int(r["seen"]), float(r["step"])
        with np.load(directory / "calibration.npz") as arrays:
            def part(prefix):
                return {k.split(".", 1)[1]: arrays[k] for k in arrays.files if k.startswith(prefix + ".")}
            ensemble.calibrators_ = {name: Calibrator.from_arrays(part(name)) for name in meta["detectors"]}
            ensemble.combined_ = Calibrator.from_arrays(part("_combined"))
        return ensemble
