"""The calibrated ensemble: detectors + per-detector calibrators + combiner + threshold.

Scoring a block of points runs every detector once on all their windows (vectorised,
through each detector's consecutive-series path), so streaming, training and offline
evaluation share one code path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import Calibrator, anomaly_score, combine
from .detectors import REGISTRY, Detector
from .detectors.base import score_consecutive
from .rolling import rolling_median_mad
from .windows import Scaler, TimeGrid, phases


@dataclass
class Decisions:
    """Per-point results of a block, all arrays of length n (one entry per scored point)."""

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
        self.scaler = scaler
        self.grid = grid
        self.period = period
        self.target_far = target_far
        self.combine = combine
        self.calibrators_: dict[str, Calibrator] = {}
        self.combined_: Calibrator | None = None

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

    def raw_scores(self, scaled: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Return ``(n - window + 1, k)`` raw scores of the points that have a full window.

        ``scaled`` and ``positions`` are ``(n,)`` consecutive points; row ``j`` belongs to
        point ``j + window - 1``.
        """
        return np.column_stack([score_consecutive(detector, *self._tail(scaled, positions, detector.window))
                                for detector in self.detectors.values()])

    def _tail(self, scaled: np.ndarray, positions: np.ndarray, window: int):
        """Return the points and phases a detector of ``window`` needs for the decidable points."""
        start = self.window - window
        phase = phases(positions[start:], self.period)
        return scaled[start:], phase

    def detector_p_values(self, raw: np.ndarray) -> np.ndarray:
        """Return ``(n, k)`` per-detector p-values of raw scores ``(n, k)``."""
        return np.column_stack([self.calibrators_[name].p_value(raw[:, i])
                                for i, name in enumerate(self.names)])

    def decide(self, scaled: np.ndarray, positions: np.ndarray) -> Decisions:
        """Score every point of ``scaled`` that has a full window (see :meth:`raw_scores`)."""
        if self.combined_ is None:
            raise RuntimeError("Ensemble: not calibrated; train it with anomaly.training.train()")
        columns, expected = [], None
        for name, detector in self.detectors.items():
            values, phase = self._tail(scaled, positions, detector.window)
            if name == "shesd":  # one rolling pass gives its score and the expected band
                stats = detector.series_stats(values, phase)
                columns.append(stats.score)
                expected = stats.center, stats.spread
            else:
                columns.append(score_consecutive(detector, values, phase))
        p_detectors = self.detector_p_values(np.column_stack(columns))
        p_value = self.combined_.p_value(combine(p_detectors, self.combine))
        center, spread = expected if expected is not None else self._rolling_band(scaled)
        return Decisions(p_detectors, p_value, anomaly_score(p_value, self.alpha), p_value < self.alpha,
                         self.scaler.inverse(center), spread * self.scaler.scale)

    def _rolling_band(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected value and spread without S-H-ESD: the rolling median and MAD (scaled units)."""
        center, mad = rolling_median_mad(scaled, self.window)
        return center, 1.4826 * mad

    # persistence: config and calibration as JSON/npz, detectors in their native formats
    def save(self, directory: Path) -> None:
        """Write the ensemble into ``directory`` (which must not be in use)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"detectors": self.names, "scaler": self.scaler.to_dict(), "grid": self.grid.to_dict(),
                "period": self.period, "target_far": self.target_far, "combine": self.combine}
        (directory / "ensemble.json").write_text(json.dumps(meta, indent=2))
        arrays = {f"{name}.{key}": value for name, cal in self.calibrators_.items()
                  for key, value in cal.to_arrays().items()}
        arrays.update({f"_combined.{k}": v for k, v in self.combined_.to_arrays().items()})
        np.savez(directory / "calibration.npz", **arrays)
        for name, detector in self.detectors.items():
            detector.save(directory / "detectors" / name)

    @classmethod
    def load(cls, directory: Path) -> Ensemble:
        """Read an ensemble written by :meth:`save`."""
        directory = Path(directory)
        meta = json.loads((directory / "ensemble.json").read_text())
        detectors = {name: REGISTRY[name].load(directory / "detectors" / name) for name in meta["detectors"]}
        ensemble = cls(detectors, Scaler(**meta["scaler"]), TimeGrid(**meta["grid"]), meta["period"],
                       meta["target_far"], meta["combine"])
        with np.load(directory / "calibration.npz") as arrays:
            def part(prefix):
                return {k.split(".", 1)[1]: arrays[k] for k in arrays.files if k.startswith(prefix + ".")}
            ensemble.calibrators_ = {name: Calibrator.from_arrays(part(name)) for name in meta["detectors"]}
            ensemble.combined_ = Calibrator.from_arrays(part("_combined"))
        return ensemble
