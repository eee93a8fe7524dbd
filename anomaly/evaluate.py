"""Evaluation on labelled data: metrics (:mod:`anomaly.evaluation.metrics`) and the NAB protocol (:mod:`anomaly.evaluation.nab`).

    python -m anomaly.evaluate nab --root ../shared/data/NAB      # --help for the options
    python -m anomaly.evaluate drift --models models              # recovery from level shifts

For each file of a NAB-style folder, ``nab`` trains on the file's probation head, as
``train.py --data FILE --head N`` does, and streams the whole file through the runner
``stream.py`` uses. It then scores the ensemble and each detector on its own (flagging
where its own calibrated p-value is below the threshold). It prints a table per category
and overall, and writes one CSV per data file (``timestamp,value,anomaly_score``) and a
``summary.json``. ``drift`` measures the recovery from sudden level shifts on the simulator
(:mod:`anomaly.evaluation.recovery`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import progress
from .families import FAMILIES, check_family
from .evaluation.metrics import (AfterEvents, after_events, clean_normal, event_metrics, event_recall, false_alarm_rate,
                                 false_alarms_per_10k, point_metrics, roc_auc, runs)
from .evaluation.nab import PROFILES, FileScore, corpus_files, halves, normalised, probation, score_file, window_bounds
from .online.streamed import ENSEMBLE, Streamed, stream_file, stream_series

__all__ = ["ENSEMBLE", "AfterEvents", "Streamed", "after_events", "clean_normal", "evaluate_file", "event_metrics", "event_recall",
           "false_alarm_rate", "false_alarms_per_10k", "labels_of", "nab_stream", "point_metrics", "roc_auc",
           "run_nab", "runs", "stream_file", "stream_series", "summarise"]
logger = logging.getLogger("anomaly.evaluate")  # also when run as __main__


def summarise(flags: np.ndarray, labels: np.ndarray, grace: int = 0, clear: int = 0) -> dict[str, float]:
    """Return point-wise, event-wise and false-alarm metrics of ``flags`` against ``labels`` as a flat dict.

    False alarms count normal points at least ``clear`` points after any event (0: all normal points).
    ``normal_after_B`` and ``flagged_after_B``: normal points in each bucket ``B`` of distance after
    an event's end (``1-9``, ``10-32``, ``33-99``, ``100+``; see :func:`after_events`), and how many
    were flagged.
    """
    points = point_metrics(flags, labels)
    events = event_metrics(flags, labels, grace=grace)
    after = after_events(flags, labels)
    return {"point_precision": points.precision, "point_recall": points.recall, "point_f1": points.f1,
            "events": events.events, "detected": events.detected, "alarms": events.alarms,
            "true_alarms": events.true_alarms, "median_delay": events.median_delay,
            "false_alarms_per_10k": false_alarms_per_10k(flags, labels, clear),
            **{f"{what}_after_{label}": count for label, n, f in zip(after.labels, after.normal, after.flagged)
               for what, count in (("normal", n), ("flagged", f))}}


@dataclass
class FileResult:
    category: str
    name: str
    rows: int
    trained: str  # "" when trained, else why not (then nothing is flagged)
    scores: dict[str, dict[str, FileScore]]  # detector -> profile -> score
    metrics: dict[str, dict[str, float]]  # detector -> summarise()
    alpha: float = 1e-3  # the target false-alarm rate the flags were decided at
    half: str = ""  # the corpus half the file is in (see anomaly.evaluation.nab.halves)


def nab_stream(path: Path, config) -> tuple[Streamed, str]:  # adapts as config.adapt says
    """Train on a file's probation head and stream the whole file; return the decisions and why training
    failed (``""`` when it did not: then nothing is flagged)."""
    from .io.sources import read_csv
    from .model.training import train
    from .online.refit import Refitter

    history = read_csv(path)
    head = probation(len(history.values))
    try:
        ensemble, report = train(history.timestamps[:head], history.values[:head], config)
    except ValueError as exc:  # e.g. a constant head: nothing to learn, so nothing is flagged
        n, k = len(history.values), len(config.ensemble.detectors)
        return Streamed(list(config.ensemble.detectors), config.calibration.target_far, history.timestamps,
                        history.values, np.zeros(n), np.ones((n, k)), np.zeros(n, dtype=bool)), str(exc)
    refitter = None
    if config.adapt.enabled and config.adapt.refit:  # inline: the scores do not depend on timing
        refitter = Refitter(config, trained_on=report["points"], background=False)
    return stream_file(ensemble, path, adapt=config.adapt, refitter=refitter), ""


def labels_of(streamed: Streamed, windows: list[list[str]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Return ``(n,)`` bool labels (inside a window) and the windows' inclusive row bounds."""
    bounds = window_bounds(streamed.timestamps, windows)
    labels = np.zeros(len(streamed.values), dtype=bool)
    for first, last in bounds:
        labels[first:last + 1] = True
    return labels, bounds


def evaluate_file(path: Path, windows: list[list[str]], config, out: Path | None) -> FileResult:
    """Run the NAB protocol on one file: train on its probation head, stream it all, score it."""
    streamed, trained = nab_stream(path, config)
    if out is not None:
        _write_scores(out / path.parent.name / path.name, streamed)
    return scored_file(path, streamed, trained, windows)


def scored_file(path: Path, streamed: Streamed, trained: str, windows: list[list[str]]) -> FileResult:
    """Return NAB's scores and the metrics of ``streamed``, the decisions :func:`nab_stream` made on the file at
    ``path`` (``trained``: why training failed, ``""`` when it did not), against its label ``windows``."""
    names = [ENSEMBLE, *streamed.names]
    labels, bounds = labels_of(streamed, windows)
    scored = slice(probation(len(labels)), None)
    scores, metrics = {}, {}
    for name in names:
        flags = streamed.flags_of(name)
        scores[name] = {profile: score_file(flags, bounds, weights) for profile, weights in PROFILES.items()}
        metrics[name] = summarise(flags[scored], labels[scored])
    return FileResult(path.parent.name, path.name, len(streamed.values), trained, scores, metrics, streamed.alpha)


def _write_scores(path: Path, streamed: Streamed) -> None:
    from .io.sinks import format_timestamps

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = zip(format_timestamps(streamed.timestamps), streamed.values.tolist(), np.round(streamed.score, 6).tolist())
    path.write_text("timestamp,value,anomaly_score\n" + "".join(f"{t},{v!r},{s!r}\n" for t, v, s in rows))


def run_nab(root: str | Path, config, out: str | Path | None = None, pattern: str = "*") -> list[FileResult]:
    """Run the NAB protocol on every ``data/<category>/<pattern>.csv`` under ``root``; return per-file results."""
    files, labels = corpus_files(Path(root))
    half = halves(files)
    files = [f for f in files if f.match(f"{pattern}.csv") or f.match(pattern)]
    results = []
    with progress.task("NAB files", total=len(files), unit="files") as bar:
        for number, path in enumerate(files, start=1):
            started = time.perf_counter()
            key = f"{path.parent.name}/{path.name}"
            bar.describe(key)
            result = evaluate_file(path, labels.get(key, []), config, None if out is None else Path(out))
            result.half = half[key]
            results.append(result)
            bar.advance()
            logger.info("[%d/%d] %-55s %6d rows  %4.1f s%s", number, len(files), key, result.rows,
                        time.perf_counter() - started, f"  (not trained: {result.trained})" if result.trained else "")
    return results


def table(results: list[FileResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Return group -> detector -> {NAB score per profile, event recall and precision, ...}.

    Groups are ``"all"``, the two halves (``"half A"``, ``"half B"``: see
    :func:`~anomaly.evaluation.nab.halves`) and the categories. Event counts are summed before taking ratios.
    """
    groups = {"all": results}
    for result in sorted(results, key=lambda r: r.half):
        if result.half:
            groups.setdefault(f"half {result.half}", []).append(result)
    for result in results:
        groups.setdefault(result.category, []).append(result)
    summary = {}
    for group, members in groups.items():
        summary[group] = {}
        for name in members[0].scores:
            row = {profile: normalised([m.scores[name][profile] for m in members]) for profile in PROFILES}
            total = {key: sum(m.metrics[name][key] for m in members)
                     for key in ("events", "detected", "alarms", "true_alarms")}
            row["event_recall"] = total["detected"] / total["events"] if total["events"] else float("nan")
            row["event_precision"] = total["true_alarms"] / total["alarms"] if total["alarms"] else float("nan")
            delays = [m.metrics[name]["median_delay"] for m in members if m.metrics[name]["detected"]]
            row["median_delay"] = float(np.median(delays)) if delays else float("nan")
            row["false_alarms_per_10k"] = float(np.nanmean([m.metrics[name]["false_alarms_per_10k"] for m in members]))
            for key in (k for k in members[0].metrics[name] if k.startswith("normal_after_")):
                normal = sum(m.metrics[name][key] for m in members)
                flagged = sum(m.metrics[name]["flagged" + key[6:]] for m in members)
                row[key[7:]] = flagged / normal / members[0].alpha if normal else float("nan")  # x the target
            row["files"] = len(members)
            summary[group][name] = row
    return summary


def format_table(summary: dict) -> str:
    """Return the per-group tables as text."""
    after = [k for k in next(iter(next(iter(summary.values())).values())) if k.startswith("after_")]
    header = (f"{'':10s} {'NAB std':>8s} {'low FP':>7s} {'low FN':>7s} {'ev.recall':>9s} {'ev.prec':>8s}"
              f" {'delay':>6s} {'FA/10k':>7s}" + "".join(f" {k[6:]:>7s}" for k in after))
    lines = []
    for group, rows in summary.items():
        files = next(iter(rows.values()))["files"]
        lines += ["", f"{group} ({files} files)", header]
        for name, r in rows.items():
            lines.append(f"{name:10s} {r['standard']:8.1f} {r['reward_low_FP_rate']:7.1f}"
                         f" {r['reward_low_FN_rate']:7.1f} {r['event_recall']:9.2f} {r['event_precision']:8.2f}"
                         f" {r['median_delay']:6.0f} {r['false_alarms_per_10k']:7.1f}"
                         + "".join(f" {r[k]:6.1f}x" for k in after))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anomaly.evaluate",
        description="Evaluate the ensemble on labelled data. `nab`: the Numenta Anomaly Benchmark protocol on a "
                    "NAB-style folder (data/<category>/*.csv, labels/combined_windows.json). `sim`: recall per "
                    "anomaly kind and flags after events on a fresh simulated stream. `drift`: false alarms after "
                    "sudden level shifts on the simulator.",
        epilog="NAB scores: 0 = flags nothing, 100 = every label window flagged at its first point. "
               "ev.recall/ev.prec: label windows found / alarms (runs of flags) inside a window. delay: median "
               "points from a window's start to its first flag. FA/10k: flags per 10,000 points outside windows. "
               "1-9, 10-32, 33-99, 100+: normal points that many points after a window's end, their flagged share "
               "over the target false-alarm rate (1.0x: on target).")
    commands = parser.add_subparsers(dest="command", required=True)
    nab = commands.add_parser("nab", help="run the NAB protocol on a folder")
    nab.add_argument("--root", required=True, help="the NAB-style folder")
    nab.add_argument("--out", default="nab-results", help="per-file CSVs and summary.json (default: nab-results)")
    nab.add_argument("--files", default="*", metavar="GLOB", help="only the data files matching this (default: all)")
    nab.add_argument("--config", metavar="TOML", help="settings file (see anomaly.example.toml)")
    nab.add_argument("--quick", action="store_true", help="tiny models (seconds per file)")
    nab.add_argument("--no-adapt", action="store_true", help="keep each file's ensemble as trained on its head")
    nab.add_argument("--no-refit", action="store_true", help="adapt the calibration only: never retrain the models")
    drift = commands.add_parser("drift", help="false alarms after sudden level shifts on the simulator",
                                description="Stream simulated points with drift and anomalies, continuing after "
                                            "the run's training data; print the false-alarm rate by distance from "
                                            "each sudden level shift, and the recall of anomalies after them.")
    _simulated_arguments(drift, points=100_000, seed=11)
    sim = commands.add_parser("sim", help="recall per anomaly kind and flags after events on the simulator",
                              description="Stream a fresh simulated stream with injected anomalies, continuing after "
                                          "the run's training data; print, for the ensemble and each detector "
                                          "alone, the recall of every anomaly kind and how often normal points are "
                                          "flagged by how far after an event's end they come.")
    _simulated_arguments(sim, points=30_000, seed=5)
    sim.add_argument("--family", choices=FAMILIES, help="the kind of metric to simulate (default: the run's)")
    families = commands.add_parser(
        "families", help="the false-alarm promise and recall on every family of the simulator",
        description="For each simulated family of metrics (smooth, bursty, counts, heavytail, steps, bounded), "
                    "seed and head length: train on that many normal points of the family, stream a fresh stream "
                    "of it with the family's own anomalies, and print recall per family and kind, and normal "
                    "points flagged by distance after events, over the target false-alarm rate (10+: every "
                    "normal point at least 10 points after any event; 1.0x keeps the promise).")
    families.add_argument("--families", default=",".join(FAMILIES), metavar="A,B",
                          help=f"families to run (default: {','.join(FAMILIES)})")
    families.add_argument("--seeds", default="1,2,3", metavar="N,M", help="history seeds (default: 1,2,3)")
    families.add_argument("--heads", default="", metavar="N,M",
                          help="points of history to train on (default: 750 and two weeks of points)")
    families.add_argument("--points", type=int, default=10_000, help="points streamed after the history "
                                                                      "(default 10,000)")
    families.add_argument("--config", metavar="TOML", help="settings file (see anomaly.example.toml)")
    families.add_argument("--quick", action="store_true", help="tiny models")
    families.add_argument("--no-adapt", action="store_true", help="keep each ensemble as trained")
    families.add_argument("--no-refit", action="store_true", help="adapt the calibration only: never retrain")
    families.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    families.add_argument("--out", default="", metavar="JSON", help="also write every run to this JSON file")
    args = parser.parse_args(argv)

    from .cli import _setup_logging

    _setup_logging()
    for name in ("anomaly.model.training", "anomaly.online.refit", "anomaly.online.adapt"):  # one line per file is enough
        logging.getLogger(name).setLevel(logging.WARNING)
    with progress.display(progress.wanted()):
        return _command(args)


def _command(args) -> int:
    """Run the evaluation ``args.command`` says; return the exit status."""
    from .cli import UserError, _config

    if args.command != "nab":
        return {"drift": _drift, "sim": _sim, "families": _families}[args.command](args)
    try:
        config = _config(args)
        if args.no_adapt or args.no_refit:
            config = dataclasses.replace(config, adapt=dataclasses.replace(
                config.adapt, enabled=config.adapt.enabled and not args.no_adapt, refit=not args.no_refit))
        results = run_nab(args.root, config, args.out, args.files)
    except (FileNotFoundError, UserError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    summary = table(results)
    print(format_table(summary))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(
        {"summary": summary, "files": [{**asdict(r), "scores": {d: {p: asdict(s) for p, s in ps.items()}
                                                               for d, ps in r.scores.items()}} for r in results]},
        indent=2, default=float))
    print(f"\nper-file scores and summary.json in {out}/")
    return 0


def _families(args) -> int:
    """``evaluate families``: the table of :mod:`anomaly.evaluation.families`."""
    from .cli import UserError, _config
    from .evaluation.families import evaluate_families, families_summary, format_families, heads

    try:
        config = _config(args)
        names = [name.strip() for name in args.families.split(",") if name.strip()]
        for name in names:
            check_family(name)
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
        lengths = [int(h) for h in args.heads.split(",") if h.strip()] or list(heads(config))
        if not names or not seeds or min(lengths) < 100 or args.points < 1000:
            raise UserError("give at least one family and seed, heads of 100 points or more and --points >= 1000")
    except (ValueError, UserError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or (os.cpu_count() or 1)
    started = time.perf_counter()
    with progress.task("family runs", total=len(names) * len(seeds) * len(lengths), unit="runs") as bar:
        runs = evaluate_families(names, seeds, lengths, args.points, config, not args.no_adapt, not args.no_refit,
                                 workers, done=lambda run: bar.advance())
    mode = ("no adaptation" if args.no_adapt else "recalibration only" if args.no_refit
            else "recalibration + refits")
    print(f"{len(runs)} runs, {mode}, {args.points:,} points each, target false-alarm rate "
          f"{config.calibration.target_far:g}, {time.perf_counter() - started:.0f} s; recall: events with a flag "
          "inside or in the 5 points after; normal points flagged by distance after an event's end, over the target")
    print(format_families(runs))
    if args.out:
        Path(args.out).write_text(json.dumps(families_summary(runs), indent=1, default=float))
    return 0


def _simulated_arguments(parser: argparse.ArgumentParser, points: int, seed: int) -> None:
    """Add the options of a command that streams the simulator through a saved run."""
    parser.add_argument("--models", default="models", help="a models folder or one run (default: models)")
    parser.add_argument("--points", type=int, default=points, help=f"simulated points (default {points:,})")
    parser.add_argument("--seed", type=int, default=seed, help=f"simulator seed (default {seed})")
    parser.add_argument("--no-adapt", action="store_true", help="keep the ensemble as trained")
    parser.add_argument("--no-refit", action="store_true", help="adapt the calibration only: never retrain the models")


def _simulated_run(args):
    """Return the run of ``--models`` with its manifest, adaptation and inline refitter, or ``None`` (error said)."""
    from .model.runs import load_run, run_config
    from .online.refit import Refitter

    try:
        ensemble, manifest = load_run(args.models)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return None
    config = run_config(manifest)
    adapt = None if args.no_adapt else config.adapt
    refitter = (Refitter(config, trained_on=manifest.get("points", 0), background=False)
                if adapt is not None and adapt.refit and not args.no_refit else None)
    return ensemble, manifest, config, adapt, refitter


def _run_line(manifest: dict, args, adapt, refitter, seconds: float) -> str:
    mode = "no adaptation" if adapt is None else "recalibration only" if refitter is None else "recalibration + refits"
    return (f"run {manifest['run']}, {mode}, {args.points:,} points (seed {args.seed}), {seconds:.0f} s"
            + (f", {refitter.refits} refits swapped in, {len(refitter.failures)} turned down" if refitter else ""))


def _drift(args) -> int:
    """``evaluate drift``: refits (unless turned off) are inline, so the numbers do not depend on timing."""
    from .evaluation.recovery import drift_recovery
    from .model.runs import simulator_start

    if (run := _simulated_run(args)) is None:
        return 2
    ensemble, manifest, _, adapt, refitter = run
    started = time.perf_counter()
    recovery = drift_recovery(ensemble, args.points, args.seed, simulator_start(manifest), adapt, refitter)
    print(_run_line(manifest, args, adapt, refitter, time.perf_counter() - started))
    print(recovery.format())
    return 0


def _sim(args) -> int:
    """``evaluate sim``: recall per kind and flagged normal points by distance after events, per detector."""
    from .model.runs import simulator_start
    from .simulate import simulate

    if (run := _simulated_run(args)) is None:
        return 2
    ensemble, manifest, config, adapt, refitter = run
    if args.family:
        config = dataclasses.replace(config, simulator=dataclasses.replace(config.simulator, family=args.family))
    started = time.perf_counter()
    series = simulate(args.points, seed=args.seed, anomalies=True, start_index=simulator_start(manifest),
                      config=config.simulator)
    streamed = stream_series(ensemble, series.timestamps, series.values, adapt=adapt, refitter=refitter)
    print(_run_line(manifest, args, adapt, refitter, time.perf_counter() - started))
    labels = series.labels.copy()
    labels[:ensemble.window - 1] = False  # warm-up: not scored
    kinds = sorted({event.kind for event in series.events})
    print(f"{len(series.events)} injected anomalies; target false-alarm rate {ensemble.alpha:g}; recall per kind "
          "(a flag in the event or the 5 points after it); normal points flagged by distance after an event's "
          "end, over the target")
    rows = []
    for name in [ENSEMBLE, *streamed.names]:
        flags = streamed.flags_of(name)
        recall = event_recall(flags, series.events, grace=5, scored_from=ensemble.window)
        after = after_events(flags[ensemble.window - 1:], labels[ensemble.window - 1:])
        rows.append((name, recall, after))
    header = f"{'':10s} {'recall':>6s}" + "".join(f" {k[:8]:>8s}" for k in kinds)
    header += "".join(f" {label:>7s}" for label in rows[0][2].labels)
    print(header)
    for name, recall, after in rows:
        print(f"{name:10s} {recall['all']:6.2f}" + "".join(f" {recall.get(k, float('nan')):8.2f}" for k in kinds)
              + "".join(f" {rate / ensemble.alpha:6.1f}x" for rate in after.rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
