"""Command lines of ``train.py`` and ``stream.py``: parse arguments, call the package.

Errors a user can fix end the program with exit status 2 and one line saying what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from . import progress
from .config import Config, load_config, quick
from .errors import UserError
from .families import FAMILIES
from .io.data import TIME_FORMATS
from .io.server import Limits
from .model.trainer import train_and_save, train_series_and_save
from .online.pipeline import DEFAULT_MODELS, Pipeline, StreamOptions


def _setup_logging(quiet: bool = False) -> None:
    handler = progress.ConsoleHandler()  # log lines go above a progress display
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
    if getattr(args, "family", None):
        config = dataclasses.replace(config, simulator=dataclasses.replace(config.simulator, family=args.family))
    if getattr(args, "target_far", None) is not None:
        config = dataclasses.replace(config, calibration=dataclasses.replace(
            config.calibration, target_far=args.target_far))
    return config


def _detector_names(text: str) -> tuple[str, ...]:
    """Return the detector names of ``a,b,c``; raises :class:`UserError` for an unknown or repeated one."""
    from .model.detectors import REGISTRY

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
               "  python train.py --data cpu.csv --head 5000 --target-far 0.0005\n"
               "  python train.py --data hosts.csv --series-column host   # many series, one run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", metavar="CSV", help="your history: a CSV with a header and columns "
                        "timestamp,value (names via --time-column/--value-column); should be mostly normal")
    parser.add_argument("--head", type=_positive_int, metavar="N",
                        help="train on the first N rows only (of each series, with --series-column)")
    parser.add_argument("--series-column", metavar="NAME",
                        help="--data holds many series, named in this column: train them all in one run")
    parser.add_argument("--per-series-models", action="store_true",
                        help="with --series-column: one complete ensemble per series, for a few, very different "
                             "series (default: the autoencoders and the forest learn once from all series' "
                             "windows; each series keeps its own scaling, seasonality and calibration)")
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
    parser.add_argument("--family", choices=FAMILIES,
                        help="without --data: the kind of metric to simulate (default: smooth; see "
                             "python -m anomaly.evaluate families)")
    parser.add_argument("--quick", action="store_true", help="tiny models in seconds, for demos and tests")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    from .online.signals import interrupted_exit_code, terminate_like_interrupt

    args = train_parser().parse_args(argv)
    _setup_logging(args.quiet)
    terminate_like_interrupt()  # SIGTERM cleans up as Ctrl-C does: no staging folder is left behind
    try:
        config = _config(args)
        if args.series_column and (not args.data or args.feedback):
            raise UserError("--series-column names the series of --data: give --data (and no --feedback, "
                            "which labels one series)")
        with progress.display(progress.wanted(args.quiet)):
            if args.series_column:
                run = train_series_and_save(config, args.models, args.data, args.series_column, args.seed,
                                            args.head, args.time_column, args.value_column, args.time_format,
                                            args.per_series_models)
            else:
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


# ---------------------------------------------------------------- stream.py
def stream_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream.py",
        description="Score a metric stream point by point and report anomalies as they happen: one "
                    "line per anomaly on the console and in anomaly.log, and a live plot. Uses the "
                    "latest run in --models, training default models first if there is none.",
        epilog="sources:\n  sim    the built-in simulator with injected anomalies (default)\n"
               "  FILE   a CSV file with columns timestamp,value, replayed in order (and series: many series)\n"
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
    parser.add_argument("--series-column", metavar="NAME",
                        help="a CSV source's column naming each point's series (default: 'series' when the header "
                             "has it; JSON lines name theirs in 'series'): each series is scored on its own")
    parser.add_argument("--evict-after", type=_rate, metavar="SECONDS",
                        help="many series: let a series silent this long go, saved to --state DIR when given, and "
                             "bring it back when it sends again (default: 3600; 0: never)")
    parser.add_argument("--no-refit", action="store_true",
                        help="adapt the calibration only: never retrain the models (default: retrain them after a "
                             "lasting change and every 20,000 points, saved as new runs: in the background when "
                             "live; a replay at --rate 0 waits for each refit where the data asked for it)")
    parser.add_argument("--feedback", metavar="JSONL",
                        help="labels read as they are added: false alarms and missed anomalies (default: "
                             "feedback.jsonl; write them with python -m anomaly.feedback)")
    tcp = parser.add_argument_group("TCP server (--source tcp://HOST:PORT)")
    tcp.add_argument("--allow-remote", action="store_true",
                     help="allow binding an address other than loopback, for the TCP server or --dashboard "
                          "(every client that can reach it is served: add --auth-token)")
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
    parser.add_argument("--family", choices=FAMILIES,
                        help="the kind of metric the simulator makes: " + ", ".join(FAMILIES) + " (default: the "
                             "one the run was trained on, else smooth)")
    parser.add_argument("--quick", action="store_true", help="if no run exists, train tiny models (seconds)")
    parser.add_argument("--quiet", action="store_true", help="no incident lines on the console")
    parser.add_argument("--dashboard", nargs="?", const="127.0.0.1:8050", metavar="[HOST:]PORT",
                        help="serve a live web dashboard while streaming (default address 127.0.0.1:8050; another "
                             "than loopback needs --allow-remote)")
    return parser


def stream_main(argv: list[str] | None = None) -> int:
    from .online.signals import interrupted_exit_code, terminate_like_interrupt

    args = stream_parser().parse_args(argv)
    _setup_logging()
    terminate_like_interrupt()
    try:
        config = _config(args)
        with progress.display(progress.wanted(args.quiet, records_on_stdout=args.output == "-")):
            return Pipeline(config, stream_options(args)).run()
    except UserError as exc:
        print(f"stream.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # during training or loading; the stream loop stops gracefully instead
        print("stream.py: interrupted; models/ is unchanged", file=sys.stderr)
        return interrupted_exit_code(exc)




def stream_options(args: argparse.Namespace) -> StreamOptions:
    """Return the :class:`~anomaly.online.pipeline.StreamOptions` that ``stream.py``'s parsed flags say."""
    names = {f.name for f in dataclasses.fields(StreamOptions)} - {"limits"}
    limits = Limits(args.max_clients, args.max_line, args.max_unread, args.idle_timeout)
    return StreamOptions(**{name: getattr(args, name) for name in names}, limits=limits)
