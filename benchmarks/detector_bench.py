"""What each detector costs to score, measured side by side on one simulated stream.

    python benchmarks/detector_bench.py              # trains every registered detector (~1 minute), then ~30 s
    python benchmarks/detector_bench.py --models DIR # a run you have

Each detector of the run scores the same 200,000 simulated points through the replay's
path (blocks of 1,024 points, ``series_stats`` or ``score_series``), on one thread. The
table gives microseconds per point and the share of river's ``HalfSpaceTrees`` per-point
time (``score_one`` + ``learn_one``, measured in the same run): a detector whose share is
small cannot pull a replay below river. The whole replay also parses, calibrates and writes
each point: ``stream_bench.py`` measures that end to end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream_bench import ENV, river_loop  # noqa: E402


def per_point_seconds(run: Path, points: int, block: int = 1024) -> dict[str, float]:
    """Return each detector's scoring seconds per point on ``points`` simulated points."""
    from anomaly.model.detectors.base import score_consecutive
    from anomaly.model.ensemble import phases
    from anomaly.model.runs import load_run, simulator_start
    from anomaly.simulate import simulate

    ensemble, manifest = load_run(run)
    series = simulate(points, seed=7, anomalies=True, start_index=simulator_start(manifest))
    scaled = ensemble.scaler.transform(series.values)
    phase = phases(ensemble.grid.positions(series.timestamps), ensemble.period)
    costs = {}
    for name, detector in ensemble.detectors.items():
        started = time.perf_counter()
        for lo in range(0, points - block - detector.window, block):
            part = slice(lo, lo + block + detector.window - 1)
            values, part_phase = scaled[part], None if phase is None else phase[part]
            if hasattr(detector, "series_stats"):
                detector.series_stats(values, part_phase)
            else:
                score_consecutive(detector, values, part_phase)
        costs[name] = (time.perf_counter() - started) / points
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a trained run/folder (default: train every registered detector)")
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    from anomaly.model.detectors import REGISTRY
    from anomaly.model.runs import resolve_run

    models = args.models
    if models is None:
        models = Path(tempfile.mkdtemp(prefix="anomaly-detectors-")) / "models"
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--models", str(models), "--quiet",
                        "--detectors", ",".join(REGISTRY)], env=ENV, check=True, stdout=subprocess.DEVNULL)
    run = resolve_run(models)
    costs = per_point_seconds(run, args.points)
    river = river_loop(__import__("numpy").random.default_rng(0).normal(size=100_000), 100_000)
    print(f"\nrun {run.name}: {args.points:,} simulated points, one thread\n")
    print(f"{'detector':14} {'us/point':>9} {'share of river HST':>19}")
    for name, seconds in costs.items():
        share = f"{seconds * river:.2f}" if river else "-"
        print(f"{name:14} {seconds * 1e6:9.2f} {share:>19}")
    if river:
        print(f"{'river HST':14} {1e6 / river:9.2f} {'1.00':>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
