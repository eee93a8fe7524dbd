"""The Spark job against the one-process runner, on the same data in the same run.

    python benchmarks/spark_bench.py                         # 100 and 1,000 series, 200,000 points each time
    python benchmarks/spark_bench.py --series 100 --points 50000

For each series count: ``--points`` simulated points spread evenly over the series,
interleaved, in ``--files`` input files (the order they arrived in). Both are given the same
quick run (trained first, ``train.py --quick``), adaptation on:

- one process: ``stream.py --source all.csv --rate 0`` (every series its own runner);
- Spark: ``python -m anomaly.spark --available-now --master local[2]``, one file per micro-batch.

Printed: points per second of each (wall time of the whole command, start-up included, and
Spark's own time from its first batch to its last), their ratio, Spark's median and
slowest batch, and the peak resident memory of the largest process of each (Spark: the JVM
or a Python worker, whichever is larger). Needs Java and ``pip install -e ".[spark]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "SPARK_LOCAL_IP": "127.0.0.1",
       "PYSPARK_PYTHON": sys.executable}


def write_input(folder: Path, series: int, points: int, files: int) -> Path:
    """Write the interleaved series as one CSV (returned) and as ``files`` files under ``folder/input``."""
    from anomaly.io.sinks import format_timestamps
    from anomaly.simulate import simulate

    per = points // series
    base = simulate(per, seed=1, anomalies=True, start_index=30_000)
    stamps = format_timestamps(base.timestamps)
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.5, 2.0, series)
    rows = [f"s{k},{stamps[i]},{base.values[(i + 37 * k) % per] * scales[k]:.4f}"
            for i in range(per) for k in range(series)]
    whole = folder / "all.csv"
    whole.write_text("series,timestamp,value\n" + "\n".join(rows) + "\n")
    (folder / "input").mkdir()
    size = -(-len(rows) // files)
    for j in range(files):
        path = folder / "input" / f"part-{j:03d}.csv"
        path.write_text("series,timestamp,value\n" + "\n".join(rows[j * size:(j + 1) * size]) + "\n")
        os.utime(path, (1e9 + 10 * j, 1e9 + 10 * j))
    return whole


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    """Run ``command`` under GNU time; return wall seconds, the peak RSS of its largest process (KB), stderr."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{command[:4]} failed:\n{result.stderr[-3000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return seconds, peak, result.stderr


def batch_times(checkpoint: Path) -> list[float]:
    """Return the seconds each committed micro-batch took, from the checkpoint's commit and offset logs' times."""
    offsets = sorted((checkpoint / "offsets").glob("[0-9]*"), key=lambda p: int(p.name))
    commits = {p.name: p.stat().st_mtime for p in (checkpoint / "commits").glob("[0-9]*")}
    return [commits[p.name] - p.stat().st_mtime for p in offsets if p.name in commits]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--points", type=int, default=200_000, help="points in all, per series count")
    parser.add_argument("--files", type=int, default=10, help="input files (micro-batches)")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    if shutil.which("java") is None:
        sys.exit("Spark needs Java: apt-get install openjdk-17-jre-headless")
    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    try:
        trained = subprocess.run([sys.executable, str(ROOT / "train.py"), "--quick", "--models", "models", "--quiet"],
                                 cwd=work, env=ENV, capture_output=True, text=True)
        assert trained.returncode == 0, trained.stderr
        print(f"{'series':>7s} {'points':>8s} {'1-process pts/s':>15s} {'Spark pts/s':>11s} {'ratio':>6s} "
              f"{'Spark batches pts/s':>19s} {'batch median/max s':>18s} {'peak MB 1-proc/Spark':>20s}")
        for series in args.series:
            folder = work / f"s{series}"
            folder.mkdir()
            write_input(folder, series, args.points, args.files)
            n = (args.points // series) * series
            one, one_peak, _ = timed([sys.executable, str(ROOT / "stream.py"), "--models", str(work / "models"),
                                      "--source", "all.csv", "--rate", "0", "--no-plot", "--quiet",
                                      "--output", "one.jsonl"], folder)
            spark, spark_peak, _ = timed([sys.executable, "-m", "anomaly.spark", "--input", "input", "--models",
                                          str(work / "models"), "--output", "out", "--checkpoint", "checkpoint",
                                          "--available-now", "--max-files", "1", "--master", args.master,
                                          "--partitions", "4"], folder)
            batches = batch_times(folder / "checkpoint")
            rows = sum(1 for _ in open(folder / "one.jsonl"))
            assert rows == n, (rows, n)
            print(f"{series:7d} {n:8d} {n / one:15,.0f} {n / spark:11,.0f} {one / spark:6.2f} "
                  f"{n / sum(batches):19,.0f} {np.median(batches):8.1f}/{max(batches):<9.1f} "
                  f"{one_peak / 1024:9.0f}/{spark_peak / 1024:<10.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
