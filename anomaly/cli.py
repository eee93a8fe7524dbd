"""Command lines of ``train.py`` and ``stream.py``: parse arguments, call the package.

Errors a user can fix end the program with exit status 2 and one line saying what to do.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

from .config import Config, load_config, quick
from .data import TIME_FORMATS
from .server import Limits

DEFAULT_MODELS = "models"
SINK_PROCESS_FROM = 50_000  # replays this long format their output in a child process (~0.5 s to start)
FEEDBACK_POLL_S = 0.5  # how often the feedback file is looked at while streaming
BYTES_PER_LINE = 30  # a timestamp,value line, for guessing a file's length
logger = logging.getLogger("anomaly")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _setup_logging(quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("anomaly")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def _config(args) -> Config:
    try:
        config = load_config(args.config)
    except FileNotFoundError:
        raise UserError(f"config file {args.config} not found") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"config file {args.config}: {exc}") from None
    if getattr(args, "quick", False):
        config = quick(config)
    if getattr(args, "detectors", None):
        config = dataclasses.replace(config, ensemble=dataclasses.replace(
            config.ensemble, detectors=_detector_names(args.detectors)))
    if getattr(args, "target_far", None) is not None:
        config = dataclasses.replace(config, calibration=dataclasses.replace(
            config.calibration, target_far=args.target_far))
    return config


def _detector_names(text: str) -> tuple[str, ...]:
    """Return the detector names of ``a,b,c``; raises :class:`UserError` for an unknown or repeated one."""
    from .detectors import REGISTRY

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in REGISTRY]
    if unknown or not names or len(set(names)) != len(names):
        raise UserError(f"--detectors {text!r}: give distinct names from {', '.join(REGISTRY)}")
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or a positive rate, got {text}")
    return value


def _far(text: str) -> float:
    value = float(text)
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 0.5), e.g. 0.001, got {text}")
    return value


# ---------------------------------------------------------------- train.py
def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the anomaly-detection ensemble (by default a dense autoencoder, S-H-ESD, Holt-Winters "
                    "and EWMA residuals; see --detectors) on normal data and calibrate it to a target false-alarm rate. "
                    "Without --data it trains on simulated normal data. The run is saved under "
                    "--models and becomes the one stream.py uses.",
        epilog="examples:\n  python train.py --quick\n"
               "  python train.py --data cpu.csv --head 5000 --target-far 0.0005",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", metavar="CSV", help="your history: a CSV with a header and columns "
                        "timestamp,value (names via --time-column/--value-column); should be mostly normal")
    parser.add_argument("--head", type=_positive_int, metavar="N", help="train on the first N rows only")
    parser.add_argument("--time-column", default="timestamp", help="timestamp column of --data (default: timestamp)")
    parser.add_argument("--value-column", default="value", help="value column of --data (default: value)")
    parser.add_argument("--time-format", choices=TIME_FORMATS, default="auto",
                        help="timestamps of --data: auto (ISO 8601, or epoch seconds/milliseconds told apart by "
                             "size), iso, epoch-s or epoch-ms (default: auto)")
    parser.add_argument("--feedback", metavar="JSONL",
                        help="labels from python -m anomaly.feedback: stretches labelled anomaly are left out of "
                             "training, false alarms are taught to calibration as normal")
    parser.add_argument("--models", default=DEFAULT_MODELS, metavar="DIR",
                        help=f"where runs are saved (default: {DEFAULT_MODELS})")
    parser.add_argument("--config", metavar="TOML", help="settings file (see anomaly.example.toml)")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed (default: from config, 0)")
    parser.add_argument("--target-far", type=_far, metavar="RATE",
                        help="false-alarm rate to calibrate for, as a fraction of normal points (default 0.001)")
    parser.add_argument("--detectors", metavar="A,B,C",
                        help="the detectors of the ensemble (default: [ensemble] detectors of the settings, "
                             "dense_ae,shesd,holt_winters,ewma); registered: dense_ae, lstm_ae, iforest, shesd, "
                             "ocsvm, kmeans, zscore, ewma, holt_winters, adwin")
    parser.add_argument("--quick", action="store_true", help="tiny models in seconds, for demos and tests")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    from .signals import interrupted_exit_code, terminate_like_interrupt

    args = train_parser().parse_args(argv)
    _setup_logging(args.quiet)
    terminate_like_interrupt()  # SIGTERM cleans up as Ctrl-C does: no staging folder is left behind
    try:
        config = _config(args)
        run = train_and_save(config, args.models, args.seed, args.data, args.head,
                             args.time_column, args.value_column, args.time_format, args.feedback)
    except UserError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("train.py: interrupted; models/ is unchanged", file=sys.stderr)
        return interrupted_exit_code(exc)
    print(f"saved {run}")
    return 0


def train_and_save(config: Config, models: str | Path, seed: int | None = None, data: str | None = None,
                   head: int | None = None, time_column: str = "timestamp",
                   value_column: str = "value", time_format: str = "auto", feedback: str | None = None) -> Path:
    """Train on ``data`` (or simulated normal data) and save a run; return the run folder.

    ``feedback``: a labels file (:mod:`anomaly.feedback`) applied to the history.
    """
    from .data import read_csv
    from .feedback import read_feedback
    from .runs import check_writable, write_run
    from .simulate import simulate
    from .training import train

    seed = config.training.seed if seed is None else seed
    try:  # before minutes of training, not after
        check_writable(models)
    except OSError as exc:
        raise UserError(f"cannot save runs in {models}: {exc.strerror or exc}") from None
    if data:
        try:
            history = read_csv(data, time_column, value_column, head, time_format)
        except FileNotFoundError:
            raise UserError(f"cannot read {data}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {data}: {exc}") from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if history.skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(history.reasons.items()))
            logger.warning("skipped %d unreadable rows of %s (%s)", history.skipped, data, reasons)
        timestamps, values, source = history.timestamps, history.values, str(data)
        logger.info("training on %d rows of %s", len(values), data)
    else:
        n = config.training.n_points
        series = simulate(n, seed=seed, config=config.simulator)
        timestamps, values, source = series.timestamps, series.values, "simulator"
        logger.info("training on %d simulated normal points (seed %d)", n, seed)
    labels = []
    if feedback:
        try:
            labels = read_feedback(feedback)
        except (OSError, ValueError) as exc:
            raise UserError(f"--feedback: {exc}") from None
    try:
        ensemble, report = train(timestamps, values, config, seed, labels=labels)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    report["data"] = {"source": source, "head": head, "seed": seed, "feedback": feedback}
    report["detectors"] = list(ensemble.names)
    if labels:
        logger.info("feedback: %d labels; %d points left out as anomalies, %d false-alarm points taught",
                    len(labels), report["excluded"], report["taught_false_alarms"])
    run = write_run(models, ensemble, report)
    logger.info("trained in %.1f s; false-alarm rate %.2g measured on held-out data (target %.2g)",
                report["train_seconds"], report["measured_far"], report["target_far"])
    return run


# ---------------------------------------------------------------- stream.py
def stream_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream.py",
        description="Score a metric stream point by point and report anomalies as they happen: one "
                    "line per anomaly on the console and in anomaly.log, and a live plot. Uses the "
                    "latest run in --models, training default models first if there is none.",
        epilog="sources:\n  sim    the built-in simulator with injected anomalies (default)\n"
               "  FILE   a CSV file with columns timestamp,value, replayed in order\n"
               "  -      standard input: one 'timestamp,value', bare 'value' or JSON object per line\n"
               "  tcp://HOST:PORT  a TCP server (loopback unless HOST says otherwise): clients send lines as\n"
               "         on stdin and get one JSON line back per line; see python -m anomaly.client --help\n\n"
               "examples:\n  python stream.py\n"
               "  python stream.py --source cpu.csv --rate 0 --no-plot --output scores.jsonl\n"
               "  tail -f metrics.log | python stream.py --source - --plot live.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="sim",
                        help="sim, a CSV file, - for stdin, or tcp://HOST:PORT to serve clients (default: sim)")
    parser.add_argument("--models", default=DEFAULT_MODELS, metavar="DIR",
                        help=f"trained runs (default: {DEFAULT_MODELS}); a run folder also works")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N input points")
    parser.add_argument("--rate", type=_rate, metavar="HZ",
                        help="points per second; 0 = as fast as possible (default: 20 for sim, 0 otherwise)")
    parser.add_argument("--output", metavar="PATH",
                        help="write one record per input point: .jsonl (JSON Lines) or .csv; "
                             "- for JSON Lines on stdout (anomaly lines then go to stderr)")
    plot = parser.add_mutually_exclusive_group()
    plot.add_argument("--no-plot", action="store_true", help="no plot")
    plot.add_argument("--plot", metavar="PNG", help="draw the plot into this PNG file instead of a window")
    parser.add_argument("--log", metavar="FILE", help="incident log: a line when one opens and when it closes "
                                                       "(default: anomaly.log)")
    parser.add_argument("--alerts", metavar="JSONL", help="also append incident events to this JSON Lines file")
    parser.add_argument("--alert-webhook", metavar="URL",
                        help="also POST each incident event as JSON to this URL (retried with back-off in the "
                             "background; never holds up the stream)")
    parser.add_argument("--quarantine", default="quarantine.jsonl", metavar="FILE",
                        help="where unreadable input lines are kept (default: quarantine.jsonl)")
    parser.add_argument("--gaps", choices=("fill", "quarantine"),
                        help="missing points in the stream: fill them (interpolated, status 'filled') or quarantine "
                             "the point after a gap (default: fill; a gap longer than the longest window restarts "
                             "the warm-up)")
    parser.add_argument("--no-adapt", action="store_true",
                        help="keep the trained ensemble as it is (default: recalibrate on recent normal points, "
                             "after drift and every 1000 points, and retrain the models in the background)")
    parser.add_argument("--state", metavar="DIR",
                        help="keep the stream's online state (window, calibration, adaptation, open incident, "
                             "counts) in DIR/stream.state when it stops, and go on from it when it starts again: "
                             "the records after a restart are those an uninterrupted run gives")
    parser.add_argument("--no-refit", action="store_true",
                        help="adapt the calibration only: never retrain the models (default: retrain them after a "
                             "lasting change and every 20,000 points, saved as new runs: in the background when "
                             "live; a replay at --rate 0 waits for each refit where the data asked for it)")
    parser.add_argument("--feedback", metavar="JSONL",
                        help="labels read as they are added: false alarms and missed anomalies (default: "
                             "feedback.jsonl; write them with python -m anomaly.feedback)")
    tcp = parser.add_argument_group("TCP server (--source tcp://HOST:PORT)")
    tcp.add_argument("--allow-remote", action="store_true",
                     help="allow binding an address other than loopback (every client that can reach it is served: "
                          "add --auth-token)")
    tcp.add_argument("--auth-token", metavar="TOKEN", default=os.environ.get("ANOMALY_AUTH_TOKEN"),
                     help="clients must send 'AUTH TOKEN' as their first line (default: $ANOMALY_AUTH_TOKEN; none)")
    tcp.add_argument("--max-clients", type=_positive_int, default=Limits.max_clients, metavar="N",
                     help=f"connections at once; more are told the server is full (default: {Limits.max_clients})")
    tcp.add_argument("--max-line", type=_positive_int, default=Limits.max_line, metavar="BYTES",
                     help=f"longest line accepted; a longer one is rejected (default: {Limits.max_line:,})")
    tcp.add_argument("--max-unread", type=_positive_int, default=Limits.max_outbox, metavar="BYTES",
                     help=f"replies a client may leave unread before it is dropped (default: {Limits.max_outbox:,})")
    tcp.add_argument("--idle-timeout", type=_rate, default=Limits.idle_timeout, metavar="SECONDS",
                     help=f"drop a client that sends nothing for this long; 0: never "
                          f"(default: {Limits.idle_timeout:g})")
    parser.add_argument("--time-column", default="timestamp", help="timestamp column of a CSV source")
    parser.add_argument("--value-column", default="value", help="value column of a CSV source")
    parser.add_argument("--time-format", choices=TIME_FORMATS, default="auto",
                        help="timestamps of the source: auto (ISO 8601, or epoch seconds/milliseconds told "
                             "apart by size), iso, epoch-s or epoch-ms (default: auto)")
    parser.add_argument("--config", metavar="TOML", help="settings file (see anomaly.example.toml)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default: 1)")
    parser.add_argument("--quick", action="store_true", help="if no run exists, train tiny models (seconds)")
    parser.add_argument("--quiet", action="store_true", help="no incident lines on the console")
    return parser


def stream_main(argv: list[str] | None = None) -> int:
    from .signals import interrupted_exit_code, terminate_like_interrupt

    args = stream_parser().parse_args(argv)
    _setup_logging()
    terminate_like_interrupt()
    try:
        config = _config(args)
        return run_stream(args, config)
    except UserError as exc:
        print(f"stream.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # during training or loading; the stream loop stops gracefully instead
        print("stream.py: interrupted; models/ is unchanged", file=sys.stderr)
        return interrupted_exit_code(exc)


def _load_or_train(args, config: Config):
    from .runs import latest_run, load_run

    models = Path(args.models)
    if not (models / "manifest.json").is_file() and latest_run(models) is None:
        print(f"No trained models in {models}/: training the default models first "
              f"({'seconds' if args.quick else 'about a minute'})...", file=sys.stderr)
        train_and_save(config, models)
    try:
        return load_run(models)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UserError(f"cannot load the run in {models}: {exc}") from None


def _points_before(saved: bytes | None) -> int:
    """Input points a saved stream had seen (0 without one)."""
    from .state import unpack

    return 0 if saved is None else int(unpack(saved)[0]["runner"][1]["counts"]["points"])


def _open_source(args, config: Config, ensemble, manifest, rate: float, resumed: int = 0):
    """Return the chunks of ``args.source``: blocks when replaying at full speed, single points when paced."""
    from . import sources

    if args.source == "sim":
        from .runs import simulator_start

        return sources.simulator_chunks(config.simulator, args.seed, simulator_start(manifest) + resumed,
                                        config.stream.batch if rate == 0 else 1)
    start = float(ensemble.grid.timestamp(0)) if ensemble.grid else 0.0
    if args.source == "-":
        # paced: one line per chunk, so that --rate paces points; else whatever has queued up
        return sources.stdin_chunks(ensemble.grid.interval, start, 1 if rate > 0 else config.stream.batch,
                                    args.time_format)
    path = Path(args.source)
    if not path.is_file():
        raise UserError(f"--source {args.source}: no such file (use sim, a CSV file, or -)")
    try:
        return sources.csv_chunks(path, args.time_column, args.value_column,
                                  chunk_bytes=sources.REPLAY_BYTES if rate == 0 else 0, time_format=args.time_format)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


def run_stream(args, config: Config) -> int:
    """Stream ``args.source`` through the latest run; print a summary; return the exit status."""
    from .alarms import AlarmFilter
    from .plot import LivePlot, has_display
    from .sink_process import SinkProcess, make_sinks
    from .feedback import FeedbackFile
    from .signals import GracefulStop, StopRequested
    from .sinks import QuarantineSink

    ensemble, manifest = _load_or_train(args, config)
    saved = _saved_state(args)
    if saved is not None:
        ensemble, manifest = _run_of_state(args, saved, ensemble, manifest)
    rate = args.rate if args.rate is not None else config.stream.rate_hz if args.source == "sim" else 0.0
    runners: list = []  # one per stream: the TCP source has one per client
    feed = _feed(args, config, ensemble, manifest, rate, runners, saved)
    specs = [("output", args.output)] if args.output else []
    try:
        sinks = make_sinks(specs)  # opened here, so that a bad path is an error before streaming
        alerts = _alert_sinks(args, config)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    cooldown = config.alerts.cooldown or config.windows.size
    filters: dict = {}  # one alarm filter per stream (per runner)
    resumed = None  # the counts and incidents a saved state brought: the summary tells this run's apart
    if saved is not None:
        alarm = filters[runners[0]] = _restore(args, runners[0], saved,
                                               AlarmFilter(config.alerts.k, config.alerts.n, cooldown))
        resumed = copy.deepcopy(runners[0].counts), alarm.count
    if rate == 0 and _expected_points(args) >= SINK_PROCESS_FROM:
        for sink in sinks:  # a long replay writes from a child process, beside the scoring
            sink.close()
        sinks = [SinkProcess(specs)]
    if not args.no_plot:
        png = args.plot
        if png is None and not has_display():
            png = "anomaly.png"
            print("no display found: the plot goes to anomaly.png (use --no-plot to skip it)", file=sys.stderr)
        sinks.append(LivePlot(config.stream.plot_points, png, title=str(args.source)))
    quarantine = QuarantineSink(args.quarantine)
    feedback = FeedbackFile(args.feedback or config.stream.feedback)
    if args.no_adapt and feedback.path.is_file():
        print(f"note: {feedback.path} is not applied with --no-adapt (train.py --feedback applies it)",
              file=sys.stderr)
    # One thread reads, scores and writes in turn. Python threads for parsing or formatting
    # were measured to slow scoring far more than they save: scoring hands the GIL back and
    # forth thousands of times per block and waits each time for a busy thread to let go.
    print(f"streaming {args.source} with run {manifest['run']} "
          f"(target false-alarm rate {ensemble.target_far:g}); Ctrl-C to stop", file=sys.stderr)
    stopped = ""  # why the stream ended early, if it did
    started = time.perf_counter()
    next_poll = 0.0
    ended = Ended()  # streams that are over (TCP clients gone): counted, their runners let go
    with GracefulStop() as stop:  # Ctrl-C, SIGTERM: finish what was read, then stop
        chunks = iter(feed)
        try:
            while True:
                try:
                    with stop.waiting():  # a signal interrupts the wait for input, never a chunk being scored
                        runner, chunk, reply = next(chunks)
                except (StopIteration, StopRequested):
                    break
                if chunk is None:  # a stream is over: close its incidents, keep its counts, let its runner go
                    for event in ended.add(runner, filters.pop(runner, None), runners):
                        for sink in alerts:
                            sink.write(event)
                    continue
                if (now := time.monotonic()) >= next_poll and not args.no_adapt:  # a stat() twice a second
                    next_poll = now + FEEDBACK_POLL_S
                    _apply_feedback(feedback, runners)
                block, rejected = runner.process(chunk)
                for line in rejected:
                    quarantine.write(line)
                for sink in sinks:
                    sink.write_block(block)
                if reply is not None:
                    reply(block, rejected)
                alarm = filters.setdefault(runner, AlarmFilter(config.alerts.k, config.alerts.n, cooldown))
                for event in alarm.update(block):
                    for sink in alerts:
                        sink.write(event)
                if stop.requested:
                    break
        except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
            stopped = "stopped: the output was closed"
        except OSError as exc:  # a full disk, say: in one line, after closing what can be closed
            _close_all(sinks + [quarantine])
            raise UserError(f"writing the output failed: {exc}") from None
        finally:
            feed.close()
            for runner in runners:
                runner.close()
        if stop.requested:
            stopped = "stopped" if stop.signum == signal.SIGINT else "stopped by SIGTERM"
        stop.finishing = True  # a second Ctrl-C now stops waiting for the output to be written
        if args.state:
            _save_state(args, runners[0], filters.get(runners[0]), manifest)
        _finish(args, ensemble, sinks, quarantine, alerts, filters, ended, runners, stopped,
                time.perf_counter() - started, resumed)
    return stop.exit_code or 0


def _saved_state(args) -> bytes | None:
    """Return the snapshot in ``--state DIR`` (``None``: no --state, or nothing saved yet)."""
    from . import state

    if not args.state:
        return None
    if args.source.startswith("tcp://"):
        raise UserError("--state keeps one stream's state: the TCP server's clients are many streams")
    try:
        return state.read(args.state)
    except OSError as exc:
        raise UserError(f"--state {args.state}: {exc}") from None


def _run_of_state(args, saved: bytes, ensemble, manifest):
    """Return the run the saved state was taken with (a refit may have made it), loaded."""
    from .runs import load_run
    from .state import SnapshotError, peek

    try:
        run = peek(saved).get("run", manifest["run"])
    except SnapshotError as exc:
        raise UserError(f"--state {args.state}: {exc}") from None
    if run == manifest["run"]:
        return ensemble, manifest
    models = Path(args.models)
    folder = models.parent if (models / "manifest.json").is_file() else models
    try:
        return load_run(folder / run)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UserError(f"--state {args.state}: it was saved with run {run}, which cannot be loaded from {folder}: "
                        f"{exc}") from None


def _restore(args, runner, saved: bytes, alarm):
    """Restore ``runner`` and its alarm filter from the saved state; return the filter."""
    from .state import SnapshotError

    try:
        extra, _ = runner.restore(saved)
        if "alarms" in extra:
            alarm.load_state(*extra["alarms"])
    except SnapshotError as exc:
        raise UserError(f"--state {args.state}: the saved state cannot be used here: {exc} "
                        "(move it away to start afresh)") from None
    print(f"resumed from {args.state}: {runner.counts.points:,} points seen before", file=sys.stderr)
    return alarm


def _save_state(args, runner, alarm, manifest: dict) -> None:
    """Write the stream's snapshot into ``--state DIR`` (atomically), with the run it was taken with."""
    from . import state

    refitter = runner.refitter
    run = Path(refitter.last_run).name if refitter is not None and refitter.last_run else manifest["run"]
    extra = {"alarms": alarm.state()} if alarm is not None else {}
    try:
        path = state.write(args.state, runner.snapshot(extra, {"run": run, "source": args.source}))
    except OSError as exc:
        print(f"stream.py: warning: the state was not saved: {exc}", file=sys.stderr)
        return
    print(f"state saved to {path}" + (" (with its open incident)" if alarm is not None and alarm.open else ""),
          file=sys.stderr)


def _finish(args, ensemble, sinks, quarantine, alerts, filters, ended, runners, stopped, seconds,
            resumed=None) -> None:
    """Close what is still open (incidents, sinks) and print the summary of a stream.

    With ``--state`` the open incident is not closed: it goes on after the restart. ``resumed``:
    the counts and incident count the saved state started from (the summary is this run's)."""
    still_open = sum(alarm.open is not None for alarm in filters.values())
    if not args.state:
        for event in (e for alarm in filters.values() for e in alarm.close()):  # the end closes what is open
            for sink in alerts:
                sink.write(event)
    problems = _close_all(sinks + [quarantine] + alerts)
    total = _total(runners, ended.counts)
    _summary(total.since(resumed[0]) if resumed else total, ensemble, args, stopped, seconds)
    incidents = sum(alarm.count for alarm in filters.values()) + ended.incidents - (resumed[1] if resumed else 0)
    kept = "kept open in the state" if args.state else "still open at the end"
    print(f"{incidents} incidents" + (f" ({still_open} {kept})" if still_open else ""), file=sys.stderr)
    if resumed:
        print(f"since the state began: {total.points:,} points, {total.anomalies:,} anomalies, "
              f"{sum(alarm.count for alarm in filters.values())} incidents", file=sys.stderr)
    for sink in alerts:
        if hasattr(sink, "failed"):
            print(f"webhook: {sink.delivered} alerts delivered, {sink.failed} not delivered (all are in the log)",
                  file=sys.stderr)
    refitters = [r.refitter for r in runners if r.refitter is not None]
    if any(r.refits or r.failures or r.abandoned for r in refitters):
        latest = next((r.last_run for r in reversed(refitters) if r.last_run), "")
        skipped, abandoned = sum(len(r.failures) for r in refitters), sum(r.abandoned for r in refitters)
        print(f"models retrained {sum(r.refits for r in refitters)} times"
              + (f" (the last saved as {latest})" if latest else "")
              + (f"; {skipped} refits skipped" if skipped else "")
              + (f"; {abandoned} still training at the end, dropped (a refit uses only idle CPU)" if abandoned else ""),
              file=sys.stderr)
    for problem in problems:
        print(f"stream.py: warning: {problem}", file=sys.stderr)


def _apply_feedback(feedback, runners: list) -> None:
    """Hand the labels added to the feedback file since the last look to every stream, saying so."""
    from .data import format_timestamp

    labels = feedback.poll()
    for problem in feedback.problems:
        print(f"stream.py: warning: feedback {problem}", file=sys.stderr)
    feedback.problems.clear()
    for label in labels:
        covered = sum(runner.feedback([label]) for runner in runners)
        print(f"feedback: {label.kind.replace('_', ' ')} {format_timestamp(label.start)} to "
              f"{format_timestamp(label.end)}: {covered} recent points relabelled"
              + ("; it also applies to points to come" if covered == 0 else ""), file=sys.stderr)


def _feed(args, config: Config, ensemble, manifest, rate: float, runners: list, saved: bytes | None = None):
    """Open the source now (a bad one is a one-line error) and return an iterator of ``(runner, chunk, reply)``:
    the chunks, the runner of their stream, and how to answer their sender (``None`` but for TCP).
    New runners are appended to ``runners``."""
    from .runner import Runner
    from .sources import limited, paced

    # a replay (a file or the simulator at full speed) refits where the data says and waits for it there, so
    # its verdicts do not depend on the machine's load; a live stream refits in the background
    replay = rate == 0 and args.source != "-" and not args.source.startswith("tcp://")

    def new_runner(refit: bool = False) -> Runner:
        adapt = None if args.no_adapt else config.adapt
        refitter = (_refitter(args, config, manifest, background=not replay)
                    if refit and adapt is not None and adapt.refit else None)
        horizon = None if args.source == "sim" else config.stream.future_horizon_s  # the simulator keeps its own time
        runners.append(Runner(ensemble, args.gaps or config.stream.gaps, config.stream.max_fill, adapt, refitter,
                              future_horizon=horizon))
        return runners[-1]

    if args.source.startswith("tcp://"):  # several streams, one models folder: recalibration only
        return _tcp_feed(args, ensemble, new_runner)
    resumed = _points_before(saved) if args.source == "sim" else 0  # the simulator goes on from there
    chunks = paced(limited(_open_source(args, config, ensemble, manifest, rate, resumed), args.limit), rate)
    runner = new_runner(refit=not args.no_refit)
    return ((runner, chunk, None) for chunk in chunks)


def _refitter(args, config: Config, manifest: dict, background: bool = True):
    """Return the refitter of a stream: the run's own settings, its refits saved beside it in the models folder.

    ``background=False``: each refit trains in this process at the point the adapter asked for it,
    and the stream waits for it there (replays: the same verdicts whatever the load)."""
    from .refit import Refitter
    from .runs import run_config

    settings = run_config(manifest, fallback=config)  # an older run without its settings: today's
    models = Path(args.models)
    folder = models.parent if (models / "manifest.json").is_file() else models
    return Refitter(settings, folder, manifest.get("data", {}).get("refit_of") or manifest["run"],
                    manifest.get("points", 0), background=background)


def _tcp_feed(args, ensemble, new_runner):
    from .server import LineServer, feed, is_loopback, parse_address

    try:
        host, port = parse_address(args.source)
    except ValueError as exc:
        raise UserError(f"--source {args.source}: {exc}") from None
    if not is_loopback(host):
        if not args.allow_remote:
            raise UserError(f"--source {args.source}: {host} is not loopback: every machine that can reach it would "
                            "be served; add --allow-remote (and --auth-token) if that is what you want")
        print(f"warning: serving {host}, not loopback: any client that can reach this port is served"
              + ("; each must send AUTH first" if args.auth_token else ", without authentication (see --auth-token)"),
              file=sys.stderr)
    limits = Limits(args.max_clients, args.max_line, args.max_unread, args.idle_timeout)
    try:
        server = LineServer(host, port, ensemble.grid.interval, float(ensemble.grid.timestamp(0)), args.time_format,
                            limits, args.auth_token or None)
    except OSError as exc:
        raise UserError(f"--source {args.source}: {exc}") from None
    host, port = server.address
    print(f"listening on tcp://{host}:{port}; send lines with: python -m anomaly.client tcp://{host}:{port}",
          file=sys.stderr)

    def chunks():
        left = args.limit
        try:
            for runner, chunk, reply in feed(server, new_runner):
                yield runner, chunk, reply
                if left is not None and chunk is not None:
                    left -= len(chunk) + len(chunk.rejected)
                    if left <= 0:
                        return
        finally:
            server.close()

    return chunks()


def _total(runners: list, ended=None):
    """Return the counts of all runners added up (and ``ended``, the counts of streams already over)."""
    from .runner import Counts

    total = Counts()
    for counts in [runner.counts for runner in runners] + ([ended] if ended is not None else []):
        for key, value in vars(counts).items():
            if key == "by_reason":
                for reason, n in value.items():
                    total.by_reason[reason] = total.by_reason.get(reason, 0) + n
            else:
                setattr(total, key, getattr(total, key) + value)
    return total


class Ended:
    """What remains of streams that are over: their counts and incidents, for the summary."""

    def __init__(self):
        from .runner import Counts

        self.counts = Counts()
        self.incidents = 0

    def add(self, runner, alarm, runners: list) -> list:
        """Fold ``runner``'s counts in, let it go; return the events that close its open incident."""
        self.counts = _total([runner], self.counts)
        runner.close()
        runners.remove(runner)
        if alarm is None:
            return []
        events = alarm.close()
        self.incidents += alarm.count
        return events


def _alert_sinks(args, config: Config) -> list:
    """Return the incident sinks: the console (unless --quiet), the log, and the optional JSON Lines and webhook."""
    from .alerts import ConsoleAlerts, JsonlAlerts, LogAlerts, WebhookAlerts

    sinks = [] if args.quiet else [ConsoleAlerts(sys.stderr if args.output == "-" else sys.stdout)]
    sinks.append(LogAlerts(args.log or config.stream.log_file))
    if path := args.alerts or config.alerts.jsonl:
        sinks.append(JsonlAlerts(path))
    if url := args.alert_webhook or config.alerts.webhook:
        sinks.append(WebhookAlerts(url))
    return sinks


def _close_all(sinks: list) -> list[str]:
    """Close every sink, even when one fails; return what went wrong, one line each."""
    problems = []
    for sink in sinks:
        try:
            sink.close()
        except BrokenPipeError:
            pass  # the output was closed: nothing more to say there
        except OSError as exc:
            problems.append(f"closing the output: {exc}")
        except KeyboardInterrupt:  # a second Ctrl-C while the output process finishes
            getattr(sink, "abort", lambda: None)()
            problems.append("interrupted while writing the output: the last records may be missing")
    return problems


def _expected_points(args) -> float:
    """Return about how many points ``args.source`` will deliver (infinite for the simulator)."""
    if args.source == "-" or args.source.startswith("tcp://"):
        return 0
    known = math.inf if args.source == "sim" else Path(args.source).stat().st_size / BYTES_PER_LINE
    return min(known, args.limit or math.inf)


def _summary(c, ensemble, args, stopped: str, seconds: float) -> None:
    scored = c.points - c.warmup
    rate = c.anomalies / scored if scored else 0.0
    lines = [(stopped or "done") + f": {c.points} points seen ({c.warmup} warm-up), "
             f"{c.anomalies} anomalies ({rate:.2%} of scored points; false-alarm target "
             f"{ensemble.target_far:g} of normal points)",
             f"{c.points + c.rejected} input lines in {seconds:.1f} s "
             f"({(c.points + c.rejected) / max(seconds, 1e-9):,.0f} per second)"]
    if c.rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(c.by_reason.items()))
        lines.append(f"{c.rejected} input lines rejected ({reasons}); kept in {args.quarantine}")
    if ensemble.grid.sequence:
        lines.append("sequence mode: the run's history was too irregular for a time grid, so points are taken "
                     "in the order of their timestamps and gaps are never filled")
    if c.filled or c.restarts:
        lines.append(f"gaps: {c.filled} missing points filled (status 'filled'), "
                     f"{c.restarts} gaps too long to fill (warm-up started again)")
    if args.output and args.output != "-":
        lines.append(f"records written to {args.output}")
    print("\n".join(lines), file=sys.stderr)
