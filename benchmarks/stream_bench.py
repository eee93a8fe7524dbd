"""Streaming speed, measured side by side on one generated stream.

    python -m pip install -e ".[bench]"      # adds river, for its HalfSpaceTrees
    python benchmarks/stream_bench.py        # about 3 minutes on 2 cores

In one run, on the same simulated stream (a labelled metric with injected anomalies):

- training: wall time of the default ``python train.py``;
- replay: ``stream.py --source FILE --rate 0 --no-plot --output out.jsonl --no-refit`` on
  ``--points`` points (1,000,000 by default): points per second end to end, process start
  included; and the default replay (refits on) of the first 100,000: a replay trains each
  refit where the data asks for one and waits for it, so that its verdicts do not depend
  on the machine's load, and that time is training, not scoring;
- memory: peak resident memory of that replay after 100,000 points and after all of them;
- live: points written one at a time to ``stream.py --source - --output -`` at a fixed rate;
  the time from writing a point to reading its record back (p50, p99);
- naive: a per-point loop as the seed scripts do it, over the run's detectors: each
  autoencoder's Keras ``predict`` on the window ending at the point, S-H-ESD refitting
  robust STL and Holt-Winters refitting statsmodels' smoothing on the trailing two periods,
  any other detector's ``score`` on that one window; on a short prefix;
- river: ``HalfSpaceTrees`` with its defaults (behind river's ``MinMaxScaler``, as river's
  documentation uses it), ``score_one`` then ``learn_one`` per point.

The table gives points per second and how many times faster our replay is. These machines
are shared and noisy: compare the ratios, which are measured minutes apart in one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def write_stream(path: Path, n: int, start_index: int, seed: int = 7) -> np.ndarray:
    """Write ``n`` simulated points (with anomalies) as ``timestamp,value``; return the values."""
    from anomaly.io.sinks import format_timestamps
    from anomaly.simulate import simulate

    series = simulate(n, seed=seed, anomalies=True, start_index=start_index)
    with open(path, "w") as handle:
        handle.write("timestamp,value\n")
        stamps = format_timestamps(series.timestamps)
        for i in range(0, n, 100_000):
            handle.write("".join(f"{t},{v:.4f}\n" for t, v in zip(stamps[i:i + 100_000],
                                                                   series.values[i:i + 100_000].tolist())))
    return series.values


def timed_process(command: list[str], cwd: Path, stdout=subprocess.DEVNULL) -> tuple[float, float, float, str]:
    """Run ``command``; return wall seconds, peak resident MB of the process itself and of the largest
    process it started or was (a refit's TensorFlow child counts here), and its stderr."""
    started = time.perf_counter()
    own_kb = 0
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=stdout, stderr=errors)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            own_kb = max(own_kb, _high_water_kb(process.pid))  # read while it runs: gone once it exits
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        errors.seek(0)
        text = errors.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text}")
    return wall, own_kb / 1024, usage.ru_maxrss / 1024, text


def _high_water_kb(pid: int) -> int:
    """Peak resident memory of one process so far, in kB (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def live_latency(models: Path, values_csv: Path, work: Path, points: int, rate: float) -> np.ndarray:
    """Return per-point milliseconds from writing a line to stream.py's stdin to reading its record."""
    lines = values_csv.read_text().splitlines()[1:points + 201]
    process = subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", str(models), "--source", "-",
                                "--no-plot", "--output", "-", "--quiet", "--log", str(work / "live.log")],
                               cwd=work, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, bufsize=0)
    while b"Ctrl-C" not in process.stderr.readline():  # loaded and listening
        pass
    # read as a client would, buffered: the unbuffered pipe (bufsize=0, so that each point is
    # written at once) reads a line one byte at a time, a system call each, and that alone
    # took 0.3 ms of every record here
    records = io.BufferedReader(process.stdout)
    warm = 200  # fill the windows first: warm-up points are not scored
    process.stdin.write("".join(line + "\n" for line in lines[:warm]).encode())
    for _ in range(warm):
        records.readline()
    latency, due = [], time.perf_counter()
    for line in lines[warm:]:
        while time.perf_counter() < due:
            pass
        sent = time.perf_counter()
        process.stdin.write((line + "\n").encode())
        record = records.readline()
        latency.append(time.perf_counter() - sent)
        assert json.loads(record)["status"] == "ok"
        due += 1.0 / rate
    process.stdin.close()
    process.wait()
    return np.array(latency) * 1e3


def naive_loop(run: Path, values: np.ndarray, points: int) -> float:
    """Points per second of a per-point loop over the run's detectors, as seed scripts do it.

    Each point calls every detector on the window ending there: the autoencoders through
    Keras ``predict``, S-H-ESD by refitting robust STL on the trailing two periods,
    Holt-Winters by refitting statsmodels' ``ExponentialSmoothing`` on them, and any other
    detector through its own ``score`` on that one window.
    """
    from anomaly.model.runs import load_run

    ensemble, _ = load_run(run)
    period = ensemble.period
    scaled = ensemble.scaler.transform(values)
    steps = [_naive_step(name, detector, run / "detectors" / name, period)
             for name, detector in ensemble.detectors.items()]
    start = max(2 * max(period, 2), max(d.window for d in ensemble.detectors.values())) + 1
    started = time.perf_counter()
    for t in range(start, start + points):
        for step in steps:
            step(scaled, t)
    return points / (time.perf_counter() - started)


def _naive_step(name: str, detector, directory: Path, period: int):
    """Return ``step(scaled, t)``: one detector's naive work for the point at index ``t``."""
    import warnings

    window = detector.window
    phase_of = (lambda t: None) if period < 2 else (lambda t: np.array([t % period]))
    if name in ("dense_ae", "lstm_ae"):
        from anomaly.model.detectors.autoencoder import keras

        model = keras().models.load_model(directory / "model.keras", compile=False)
        shape = (1, window) if name == "dense_ae" else (1, window, 1)

        def step(scaled, t):
            w = scaled[t - window + 1:t + 1]
            model.predict((w - np.median(w)).reshape(shape), verbose=0)
        return step
    trailing = 2 * max(period, 2)
    if name == "shesd":
        from statsmodels.tsa.seasonal import STL

        def step(scaled, t):
            residual = STL(scaled[t - trailing + 1:t + 1], period=max(period, 2), robust=True).fit().resid
            return (residual[-1] - np.median(residual)) / (np.median(np.abs(residual - np.median(residual))) + 1e-9)
        return step
    if name == "holt_winters":
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        def step(scaled, t):
            history = scaled[t - trailing:t]  # two whole periods before the point
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = ExponentialSmoothing(history, trend="add", seasonal="add" if period >= 2 else None,
                                             seasonal_periods=period if period >= 2 else None).fit()
            return scaled[t] - model.forecast(1)[0]
        return step

    def step(scaled, t):
        detector.score(scaled[t - window + 1:t + 1][None, :], phase_of(t))
    return step


def river_loop(values: np.ndarray, points: int) -> float | None:
    """Points per second of river's HalfSpaceTrees with its defaults, or ``None`` without river."""
    try:
        from river import anomaly, preprocessing
    except ImportError:
        return None
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees()
    started = time.perf_counter()
    for value in values[:points].tolist():
        x = {"value": value}
        model.score_one(x)
        model.learn_one(x)
    return points / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points in the replay (default 1,000,000)")
    parser.add_argument("--models", type=Path, help="use this trained run/folder instead of training the default one")
    parser.add_argument("--detectors", help="train this ensemble (train.py --detectors) instead of the default one")
    parser.add_argument("--live-points", type=int, default=2000)
    parser.add_argument("--live-rate", type=float, default=200.0, help="points per second sent live")
    parser.add_argument("--naive-points", type=int, default=50)
    parser.add_argument("--river-points", type=int, default=100_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="anomaly-bench-"))
    print(f"working in {work}", file=sys.stderr)
    if args.models is None:
        models = work / "models"
        chosen = ["--detectors", args.detectors] if args.detectors else []
        train_s, _, _, _ = timed_process([sys.executable, str(ROOT / "train.py"), "--models", str(models), "--quiet",
                                          *chosen], work, subprocess.DEVNULL)
    else:
        models, train_s = args.models.resolve(), None
    from anomaly.model.runs import resolve_run, simulator_start

    run = resolve_run(models)
    start = simulator_start(json.loads((run / "manifest.json").read_text()))
    full, prefix = work / "stream.csv", work / "stream-100k.csv"
    values = write_stream(full, args.points, start)
    prefix.write_text("".join(open(full).readlines()[:min(100_000, args.points) + 1]))

    def replay(source: Path, *flags: str) -> tuple[float, float, float, float]:
        command = [sys.executable, str(ROOT / "stream.py"), "--models", str(models), "--source", str(source),
                   "--rate", "0", "--no-plot", "--output", str(work / "out.jsonl"),
                   "--log", str(work / "anomaly.log"), "--quarantine", str(work / "quarantine.jsonl"), *flags]
        wall, own_mb, largest_mb, stderr = timed_process(command, work)
        in_loop = float(re.search(r"\(([\d,]+) per second\)", stderr).group(1).replace(",", ""))
        return wall, own_mb, largest_mb, in_loop

    warm = work / "warm-up.csv"  # the first run of a checkout compiles the numba kernels: not measured
    warm.write_text("".join(open(full).readlines()[:2001]))
    replay(warm)
    # a replay waits for each refit where the data asks for one (deterministic verdicts): at full speed that is
    # training time, measured apart on 100,000 points; the scoring pipeline is measured without refits
    small_wall, small_mb, _, _ = replay(prefix, "--no-refit")
    wall, peak_mb, largest_mb, in_loop = replay(full, "--no-refit")
    refit_wall, refit_mb, _, _ = replay(prefix)
    ours = args.points / wall
    latency = live_latency(models, full, work, args.live_points, args.live_rate)
    naive = naive_loop(run, values, args.naive_points)
    river = river_loop(values, args.river_points)

    manifest = json.loads((run / "manifest.json").read_text())
    # (a run a refit wrote before its manifest named them: the detectors of its configuration)
    detectors = ",".join(manifest.get("detectors") or manifest["config"]["ensemble"]["detectors"])
    print(f"\nstream: {args.points:,} simulated points with injected anomalies; run {run.name} ({detectors})\n")
    rows = [
        ("ours: replay, end to end (stream.py --rate 0 --no-refit)", f"{ours:,.0f}", "1.0"),
        ("ours: replay, after start-up", f"{in_loop:,.0f}", f"{ours / in_loop:.2f}"),
        (f"ours: replay with refits waited for ({min(100_000, args.points):,} points)",
         f"{min(100_000, args.points) / refit_wall:,.0f}", f"{ours * refit_wall / min(100_000, args.points):.1f}"),
        (f"naive per-point loop ({args.naive_points} points)", f"{naive:,.1f}", f"{ours / naive:,.0f}"),
        (f"river HalfSpaceTrees, defaults ({args.river_points:,} points)",
         f"{river:,.0f}" if river else "not installed", f"{ours / river:.2f}" if river else "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'points/s':>12}  {'ours / this':>12}")
    for name, rate, ratio in rows:
        print(f"{name:{width}}  {rate:>12}  {ratio:>12}")
    print()
    print(f"replay wall time: {wall:.1f} s for {args.points:,} points ({small_wall:.1f} s for {min(100_000, args.points):,})")
    print(f"live, one point at a time at {args.live_rate:g}/s over stdin ({len(latency)} points): "
          f"p50 {np.percentile(latency, 50):.2f} ms, p99 {np.percentile(latency, 99):.2f} ms, "
          f"max {latency.max():.2f} ms from arrival to decision")
    print(f"peak memory of the stream: {small_mb:.0f} MB after 100,000 points, {peak_mb:.0f} MB after "
          f"{args.points:,} ({100 * (peak_mb / small_mb - 1):+.1f}%); with refits (TensorFlow loaded to train) "
          f"{refit_mb:.0f} MB")
    if train_s is not None:
        print(f"training: python train.py{' --detectors ' + args.detectors if args.detectors else ''} in {train_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
