"""Many series in one process: training time, scoring speed per tick, and memory per series.

    python benchmarks/many_series_bench.py                       # 1,000 series x 2,000 points to train,
                                                                  # 10,000 series x 100 ticks to stream
    python benchmarks/many_series_bench.py --train-series 100 --stream-series 1000   # a quick look
    python benchmarks/many_series_bench.py --models DIR     # streaming only, on a run an earlier one trained

In one run, on simulated series (each its own seed, scale and level):

- training: ``train.py --data many.csv --series-column series`` on ``--train-series``
  series of ``--train-points`` points (the shape learners pooled, each series its own
  calibration), wall time end to end;
- ticks: ``--stream-series`` series send one point each per tick, ``--ticks`` ticks, every
  tick one chunk through :class:`~anomaly.online.keyed.KeyedRunners` (adaptation on). Each series
  first gets a window of history (untimed; time by time, in chunks of 30,000 rows as a replay
  of an interleaved file reads it), so the ticks are scored, not warm-up. Points per second
  of the ticks scored together (:mod:`anomaly.online.ticks`, the default), of a few ticks with each series through its own runner (``ticks=False``), and
  of the same number of points of one series replayed alone through one runner in the same
  run, in blocks of 1,000 as a replay reads them (the ratio is the figure: goal 0.5 or
  more), and one point per chunk (as live). Each streamed series continues a trained
  series' simulated data (series beyond those trained reuse them in turn);
- memory: resident memory of the process before the series start and after the last tick,
  per active series (young series: a window of history and the ticks); then at steady state:
  ``--steady-series`` series streamed ``--steady-ticks`` ticks (past the adapter's 5,000-point
  history, several recalibrations and the drift windows' full 16,384 points), resident memory
  gained and the arrays each series holds, in a process of its own that first streamed the same
  series as long and let them go: what a process does once (models loaded lazily, code compiled
  and imported at first use, caches) is not a series' state. Each steady series has models of its
  own while ``--train-series`` is at least ``--steady-series`` (as by default; series sharing
  models share their numbers and calibration too, and look cheaper). Resident memory is measured
  from a heap handed back to the system, both as it stands after the last tick (the runners hand
  freed memory back at most once a second: :mod:`anomaly.online.heap`) and once freed memory is
  handed back.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
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
PRIME_ROWS = 30_000  # rows of history per chunk: about what a replay reads at a time (anomaly.io.sources.REPLAY_BYTES)


def series_shapes(series: int) -> list[tuple[float, float]]:
    """Return each simulated series' ``(scale, level)``: the simulator's values are scaled and moved by these."""
    rng = np.random.default_rng(0)
    return [(10 ** rng.uniform(-1, 3), rng.uniform(-100, 100)) for _ in range(series)]


def write_many(path: Path, series: int, points: int) -> None:
    """Write ``series`` interleaved simulated series of ``points`` points as ``timestamp,series,value``."""
    from anomaly.io.sinks import format_timestamps
    from anomaly.simulate import simulate

    columns = []
    for i, (scale, level) in enumerate(series_shapes(series)):
        one = simulate(points, seed=1000 + i)
        columns.append((format_timestamps(one.timestamps), (one.values * scale + level).tolist()))
    with open(path, "w") as handle:
        handle.write("timestamp,series,value\n")
        for t in range(points):
            handle.write("".join(f"{stamps[t]},s{i},{values[t]!r}\n" for i, (stamps, values) in enumerate(columns)))


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def trimmed_rss_mb() -> float:
    """Resident memory in MB once freed memory is handed back to the system (glibc's ``malloc_trim``, where there
    is one): the heap of a process keeps what earlier work freed, and a measurement that starts on such a heap
    counts what it reuses as free (measured: the same steady state read 38 to 60 KB a series from one run to
    the next)."""
    from anomaly.online.heap import hand_back

    gc.collect()
    hand_back()
    return rss_mb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-series", type=int, default=1000)
    parser.add_argument("--train-points", type=int, default=2000)
    parser.add_argument("--stream-series", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--models", type=Path, help="a run trained by an earlier benchmark with the same "
                        "--train-series and --train-points: streaming only (training is not timed)")
    parser.add_argument("--slow-ticks", type=int, default=3, help="ticks timed with each series through its own runner")
    parser.add_argument("--steady-series", type=int, default=100, help="series streamed to steady state (memory)")
    parser.add_argument("--steady-ticks", type=int, default=17_000, help="their ticks: past the adapter's 5,000 kept "
                        "points, several recalibrations and the drift windows' 16,384 points")
    parser.add_argument("--steady-only", action="store_true", help=argparse.SUPPRESS)  # (the child process below)
    args = parser.parse_args()
    if args.steady_only:
        return steady_child(args)

    from anomaly.config import Config
    from anomaly.io.records import Chunk
    from anomaly.model.runs import load_series
    from anomaly.online.keyed import KeyedRunners
    from anomaly.online.runner import Runner
    from anomaly.simulate import simulate

    shapes = series_shapes(args.train_series)
    models, train_s = args.models, None
    if models is None:
        work = Path(tempfile.mkdtemp(prefix="anomaly-many-"))
        print(f"working in {work}", file=sys.stderr)
        write_many(work / "many.csv", args.train_series, args.train_points)
        started = time.perf_counter()
        models = work / "models"
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(work / "many.csv"), "--series-column",
                        "series", "--models", str(models), "--quiet"], env=ENV, check=True, stdout=subprocess.DEVNULL)
        train_s = time.perf_counter() - started

    ensembles, manifest = load_series(models)
    trained = [i for i in range(args.train_series) if f"s{i}" in ensembles]
    adapt = dataclasses.replace(Config().adapt, refit=False)  # as stream.py runs many series: no refits
    window = max(ensemble.window for ensemble in ensembles.values())
    # each trained series goes on where its training data ended: a window of history, then the ticks
    after = args.train_points + window + args.ticks
    going_on = {}
    for i in trained:
        one = simulate(after, seed=1000 + i)
        scale, level = shapes[i]
        going_on[i] = one.timestamps[args.train_points:], one.values[args.train_points:] * scale + level

    # one series alone: the same number of points through one runner
    total = args.stream_series * args.ticks
    one = simulate(args.train_points + total, seed=1000 + trained[0])
    values = one.values * shapes[trained[0]][0] + shapes[trained[0]][1]
    runner = Runner(ensembles[f"s{trained[0]}"], adapt=adapt)
    runner.process(Chunk(one.timestamps[:args.train_points], values[:args.train_points],
                         np.arange(args.train_points) + 1))  # warm: its windows are full
    alone_points = min(total, 20_000)
    tic = time.perf_counter()
    for i in range(args.train_points, args.train_points + alone_points):
        runner.process(Chunk(one.timestamps[i:i + 1], values[i:i + 1], np.array([i + 1])))
    alone = alone_points / (time.perf_counter() - tic)
    runner = Runner(ensembles[f"s{trained[0]}"], adapt=adapt)
    tic = time.perf_counter()
    for i in range(0, args.train_points + total, 1000):
        runner.process(Chunk(one.timestamps[i:i + 1000], values[i:i + 1000],
                             np.arange(i, min(i + 1000, len(values))) + 1))
    replay = (args.train_points + total) / (time.perf_counter() - tic)

    names = [f"s{i}" for i in range(args.stream_series)]
    source = [trained[i % len(trained)] for i in range(args.stream_series)]

    def streamed(ticks: bool, count: int) -> tuple[KeyedRunners, float]:
        """Prime every series with a window of history, then time ``count`` ticks; return the runners, points/s."""
        keyed = KeyedRunners(lambda key: Runner(ensembles[f"s{source[int(key[1:])]}"], adapt=adapt), ticks=ticks)
        # the history as a file of interleaved series reads it: time by time, in chunks of a replay's size (one chunk
        # of all of it held every series' decisions of it at once, 13-16 KB a series of the memory measured after)
        stamps = np.array([going_on[j][0][:window] for j in source]).T.ravel()
        values = np.array([going_on[j][1][:window] for j in source]).T.ravel()
        keys = names * window
        for lo in range(0, len(stamps), PRIME_ROWS):
            hi = min(lo + PRIME_ROWS, len(stamps))
            keyed.process(Chunk(stamps[lo:hi], values[lo:hi], np.arange(lo, hi) + 1, series=keys[lo:hi]))
        tic = time.perf_counter()
        for tick in range(count):
            at = window + tick
            keyed.process(Chunk(np.array([going_on[j][0][at] for j in source]),
                                np.array([going_on[j][1][at] for j in source]),
                                np.arange(len(source)) + 1 + (window + tick) * len(source), series=names))
        return keyed, len(source) * count / (time.perf_counter() - tic)

    before = rss_mb()
    keyed, ticks = streamed(True, args.ticks)
    after_mb = rss_mb()
    active = len(keyed.active)
    anomalies = keyed.counts().anomalies
    del keyed
    _, one_by_one = streamed(False, args.slow_ticks)

    # in a process of its own: here the heap freed by the ticks above would hold the steady state unseen
    child = subprocess.run([sys.executable, __file__, "--steady-only", "--models", str(models), "--train-series",
                            str(args.train_series), "--train-points", str(args.train_points), "--steady-series",
                            str(args.steady_series), "--steady-ticks", str(args.steady_ticks)],
                           env=ENV, check=True, capture_output=True, text=True)
    steady = json.loads(child.stdout.strip().splitlines()[-1])

    took = f"in {train_s:.0f} s" if train_s is not None else f"(not timed: the run {models} was given)"
    print(f"\ntraining: {args.train_series:,} series x {args.train_points:,} points {took} "
          f"({len(manifest['series']):,} trained, {len(manifest['untrained'])} not; shared: "
          f"{', '.join(manifest['shared_detectors']) or 'none'})")
    print(f"ticks: {args.stream_series:,} series x {args.ticks} ticks, one point each per tick: {ticks:,.0f} points/s "
          f"scored together ({anomalies:,} flagged); each series through its own runner "
          f"({args.slow_ticks} ticks): {one_by_one:,.0f} points/s")
    print(f"one series alone, replayed in blocks of 1,000: {replay:,.0f} points/s (ticks / this: {ticks / replay:.2f}, "
          f"goal 0.5); one point per chunk: {alone:,.0f} points/s (ticks / this: {ticks / alone:.2f})")
    print(f"memory: {before:.0f} MB before the series, {after_mb:.0f} MB after ({(after_mb - before) * 1024 / active:,.0f}"
          f" KB per active series; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    print(f"memory at steady state ({args.steady_series} series x {args.steady_ticks:,} ticks, "
          f"{steady['recalibrations']:.1f} recalibrations each): {steady['rss']:,.0f} KB per series resident, "
          f"{steady['rss_trimmed']:,.0f} KB once freed memory is handed back (malloc_trim); "
          f"arrays per series: {steady['kept']:,.0f} KB kept points, {steady['calibration']:,.0f} KB calibration "
          f"samples, {steady['drift']:,.0f} KB drift windows, {steady['lane']:,.0f} KB lane")
    return 0


def steady_child(args) -> int:
    """Print the steady state's figures (:func:`steady_state`) as one JSON line, the models warmed first."""
    from anomaly.config import Config
    from anomaly.model.runs import load_series

    ensembles, _ = load_series(args.models)
    trained = [i for i in range(args.train_series) if f"s{i}" in ensembles]
    adapt = dataclasses.replace(Config().adapt, refit=False)
    shapes = series_shapes(args.train_series)
    # warm: the same series streamed as long first, then let go. A series' first decisions load its models lazily,
    # the first recalibrations import what they use (counted as state: 600 KB a series of 190), and later stages
    # compile and cache what they use at first (200 series x 6,000 ticks, thinning every 256 points: 64 KB a series
    # once freed memory was handed back after a warm-up of 1,100 ticks, 55 after one as long as the run; with the
    # latter and thinning every 128 points, 51, 50 and 49 KB at 100, 200 and 400 series: a series' own state)
    steady_state(ensembles, trained, shapes, adapt, args.train_points, args.steady_series, args.steady_ticks)
    gc.collect()
    print(json.dumps(steady_state(ensembles, trained, shapes, adapt, args.train_points, args.steady_series,
                                  args.steady_ticks)))
    return 0


def steady_state(ensembles, trained, shapes, adapt, train_points: int, series: int, ticks: int) -> dict[str, float]:
    """Stream ``series`` series (each its own trained models) for ``ticks`` ticks; return KB per series: resident
    memory gained, and the arrays held by the adapters (kept points, drift windows), the calibration tables and
    the lanes, with the mean recalibrations per series."""
    from anomaly.io.records import Chunk
    from anomaly.online.keyed import KeyedRunners
    from anomaly.online.runner import Runner
    from anomaly.simulate import simulate

    picked = [trained[i % len(trained)] for i in range(series)]
    data = []
    for i in picked:
        one = simulate(train_points + ticks, seed=1000 + i)
        data.append((one.timestamps[train_points:], one.values[train_points:] * shapes[i][0] + shapes[i][1]))
    stamps, values = np.array([d[0] for d in data]), np.array([d[1] for d in data])
    names = [f"s{i}" for i in range(series)]
    before = trimmed_rss_mb()
    keyed = KeyedRunners(lambda key: Runner(ensembles[f"s{picked[int(key[1:])]}"], adapt=adapt))
    for t in range(ticks):
        keyed.process(Chunk(stamps[:, t], values[:, t], np.arange(series) + 1 + t * series, series=names))
    rss = (rss_mb() - before) * 1024 / series
    rss_trimmed = (trimmed_rss_mb() - before) * 1024 / series
    lanes = sum(column.nbytes for lane in keyed._lanes.values() for column in lane._columns.values())
    tables = sum(table._data.nbytes for group in keyed._ticks._groups.values() for table in group.tables.values())
    runners = keyed.runners()
    kept = sum(column.nbytes for runner in runners for column in runner.adapter.kept._columns.values())
    drift = sum(runner.adapter._level._buffer.nbytes + runner.adapter._evidence._buffer.nbytes for runner in runners)
    return {"rss": rss, "rss_trimmed": rss_trimmed, "kept": kept / 1024 / series, "calibration": tables / 1024 / series,
            "drift": drift / 1024 / series, "lane": lanes / 1024 / series,
            "recalibrations": float(np.mean([runner.adapter.recalibrations for runner in runners]))}


if __name__ == "__main__":
    sys.exit(main())
