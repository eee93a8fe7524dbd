"""Many series in one process: training time, scoring speed per tick, and memory per series.

    python benchmarks/many_series_bench.py                       # 1,000 series x 2,000 points to train,
                                                                  # 10,000 series x 100 ticks to stream
    python benchmarks/many_series_bench.py --train-series 100 --stream-series 1000   # a quick look

In one run, on simulated series (each its own seed, scale and level):

- training: ``train.py --data many.csv --series-column series`` on ``--train-series``
  series of ``--train-points`` points (the shape learners pooled, each series its own
  calibration), wall time end to end;
- ticks: ``--stream-series`` series send one point each per tick, ``--ticks`` ticks, every
  tick one chunk through :class:`~anomaly.keyed.KeyedRunners` (each series' own runner,
  adaptation on): points per second, against the same number of points of one series
  replayed alone through one runner in the same run, in blocks of 1,000 as a replay reads
  them (the ratio is the figure: goal 0.5 or more), and one point per chunk (as live);
- memory: resident memory of the process before the series start and after the last tick,
  per active series.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def write_many(path: Path, series: int, points: int, start: int = 0) -> None:
    """Write ``series`` interleaved simulated series of ``points`` points as ``timestamp,series,value``."""
    from anomaly.simulate import simulate
    from anomaly.sinks import format_timestamps

    rng = np.random.default_rng(0)
    columns = []
    for i in range(series):
        one = simulate(points, seed=1000 + i, start_index=start)
        scale, level = 10 ** rng.uniform(-1, 3), rng.uniform(-100, 100)
        columns.append((format_timestamps(one.timestamps), (one.values * scale + level).tolist()))
    with open(path, "w") as handle:
        handle.write("timestamp,series,value\n")
        for t in range(points):
            handle.write("".join(f"{stamps[t]},s{i},{values[t]!r}\n" for i, (stamps, values) in enumerate(columns)))


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-series", type=int, default=1000)
    parser.add_argument("--train-points", type=int, default=2000)
    parser.add_argument("--stream-series", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=100)
    args = parser.parse_args()

    from anomaly.config import Config
    from anomaly.keyed import KeyedRunners
    from anomaly.records import Chunk
    from anomaly.runner import Runner
    from anomaly.runs import load_series
    from anomaly.simulate import simulate

    work = Path(tempfile.mkdtemp(prefix="anomaly-many-"))
    print(f"working in {work}", file=sys.stderr)
    write_many(work / "many.csv", args.train_series, args.train_points)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(work / "many.csv"), "--series-column",
                    "series", "--models", str(work / "models"), "--quiet"], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    train_s = time.perf_counter() - started

    ensembles, manifest = load_series(work / "models")
    keys = sorted(ensembles)
    adapt = dataclasses.replace(Config().adapt, refit=False)  # as stream.py runs many series: no refits
    # one series alone: the same number of points through one runner, one point per chunk
    total = args.stream_series * args.ticks
    one = simulate(args.train_points + total, seed=1000, start_index=0)
    runner = Runner(ensembles[keys[0]], adapt=adapt)
    runner.process(Chunk(one.timestamps[:args.train_points], one.values[:args.train_points],
                         np.arange(args.train_points) + 1))  # warm: its windows are full
    alone_points = min(total, 20_000)
    tic = time.perf_counter()
    for i in range(args.train_points, args.train_points + alone_points):
        runner.process(Chunk(one.timestamps[i:i + 1], one.values[i:i + 1], np.array([i + 1])))
    alone = alone_points / (time.perf_counter() - tic)
    runner = Runner(ensembles[keys[0]], adapt=adapt)
    tic = time.perf_counter()
    for i in range(0, args.train_points + total, 1000):
        runner.process(Chunk(one.timestamps[i:i + 1000], one.values[i:i + 1000],
                             np.arange(i, min(i + 1000, len(one.values))) + 1))
    replay = (args.train_points + total) / (time.perf_counter() - tic)

    before = rss_mb()
    # series beyond those trained reuse the trained series' ensembles in turn (the scoring cost is the same)
    keyed = KeyedRunners(lambda key: Runner(ensembles[keys[int(key[1:]) % len(keys)]], adapt=adapt))
    names = [f"s{i}" for i in range(args.stream_series)]
    level = {key: ensemble.scaler.center for key, ensemble in ensembles.items()}
    spread = {key: ensemble.scaler.scale for key, ensemble in ensembles.items()}
    rng = np.random.default_rng(1)
    base = float(one.timestamps[args.train_points])
    interval = ensembles[keys[0]].grid.interval
    tic = time.perf_counter()
    for tick in range(args.ticks):
        stamps = np.full(args.stream_series, base + tick * interval)
        values = np.array([level[keys[i % len(keys)]] + spread[keys[i % len(keys)]] * rng.normal()
                           for i in range(args.stream_series)])
        keyed.process(Chunk(stamps, values, np.arange(args.stream_series) + 1 + tick * args.stream_series,
                            series=names))
    ticks = total / (time.perf_counter() - tic)
    after = rss_mb()

    print(f"\ntraining: {args.train_series:,} series x {args.train_points:,} points in {train_s:.0f} s "
          f"({len(manifest['series']):,} trained, {len(manifest['untrained'])} not; shared: "
          f"{', '.join(manifest['shared_detectors']) or 'none'})")
    print(f"ticks: {args.stream_series:,} series x {args.ticks} ticks, one point each per tick: {ticks:,.0f} points/s")
    print(f"one series alone, replayed in blocks of 1,000: {replay:,.0f} points/s (ticks / this: {ticks / replay:.2f}, "
          f"goal 0.5); one point per chunk: {alone:,.0f} points/s (ticks / this: {ticks / alone:.2f})")
    print(f"memory: {before:.0f} MB before the series, {after:.0f} MB after ({(after - before) * 1024 / len(keyed.active):,.0f}"
          f" KB per active series; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
