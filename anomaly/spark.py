"""The same detector inside Apache Spark Structured Streaming: per-series state, exactly-once records.

``python -m anomaly.spark --input DIR --models DIR --output DIR --checkpoint DIR`` reads CSV
or JSON Lines files of ``series,timestamp,value`` as they appear in ``--input`` (or a Kafka
topic), groups them by series and scores each group with the series' own
:class:`~anomaly.online.runner.Runner` and :class:`~anomaly.io.alarms.AlarmFilter` inside
``applyInPandasWithState``. A series' whole online state is its
:meth:`~anomaly.online.runner.Runner.snapshot` (numpy arrays and JSON as bytes, no pickle), kept in
Spark's checkpointed state store (RocksDB). Rows of a group are sorted by timestamp before
scoring; the models are loaded once per worker process (:func:`scorer`).

Every micro-batch writes its decision records to ``OUTPUT/decisions/batch=N`` and its
quarantined lines to ``OUTPUT/quarantine/batch=N`` as Parquet, replacing what a crashed
attempt of the same batch left: a batch that is run again after a crash reads the same input
offsets and the same state, so it writes the same rows, and the output holds every input
point exactly once. Incident events then go to the same alert sinks as ``stream.py``'s
(log, JSON Lines, webhook); a batch run again sends its events again (at least once), each
with an ``id`` that makes a resend harmless.

Refits do not run inside streaming tasks: ``python -m anomaly.spark refit`` is a batch job
that retrains every series on the points it has seen (see :func:`refit_main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

CRASH_AT = "ANOMALY_SPARK_KILL_AT_BATCH"  # tests: kill -9 the driver's process group after writing this batch
SCHEMA = "series STRING, timestamp STRING, value STRING"  # the input, every field as text: the scorer parses
STATE_KEY = "snapshot"  # the one column of a series' state: its runner's snapshot bytes
_SCORERS: dict = {}  # models folder -> Scorer, one per worker process (Python workers are reused)


# ---------------------------------------------------------------- the scorer, on the workers
class Scorer:
    """The runs of a models folder and the stream's settings: makes each series' runner and alarm filter.

    The run in use is the folder's latest, looked up at every group (a refit's new run is
    picked up at the next micro-batch); runs are loaded once each and kept."""

    def __init__(self, models: str, config_json: str, adapt: bool):
        from .config import config_from_dict

        self.models = models
        self.config = config_from_dict(json.loads(config_json))
        self.adapt = dataclasses.replace(self.config.adapt, refit=False) if adapt else None  # no refits in tasks
        self._runs: dict[str, tuple[dict, dict]] = {}

    def run(self, name: str | None = None) -> tuple[str, dict, dict]:
        """Return the name, ensembles by series and manifest of run ``name`` (``None``: the one in use)."""
        from .model.runs import load_series, resolve_run

        path = resolve_run(self.models) if name is None else _run_path(self.models, name)
        if path.name not in self._runs:
            self._runs[path.name] = load_series(path)
        return path.name, *self._runs[path.name]

    @staticmethod
    def ensemble(ensembles: dict, manifest: dict, series: str):
        """Return the ensemble that scores ``series`` in a run (``None``: a many-series run without it; a refit
        of a one-series run keeps that one, under ``""``, for series it has not seen)."""
        if "series" not in manifest:
            return ensembles[""]
        return ensembles.get(series, ensembles.get(""))

    def runner(self, ensemble):
        from .online.runner import Runner

        stream = self.config.stream
        return Runner(ensemble, stream.gaps, stream.max_fill, self.adapt, future_horizon=stream.future_horizon_s)

    def alarm(self, series: str):
        from .io.alarms import AlarmFilter

        alerts = self.config.alerts
        return AlarmFilter(alerts.k, alerts.n, alerts.cooldown or self.config.windows.size, series=series)


def scorer(models: str, config_json: str, adapt: bool) -> Scorer:
    """Return the worker's :class:`Scorer` of ``models`` (made on first use, then kept)."""
    key = (models, config_json, adapt)
    if key not in _SCORERS:
        # pyspark's own worker pads each group's output with empty rows and concatenates them, and pandas
        # warns about that at every micro-batch: a wall of FutureWarnings on the job's stderr, none about our data
        warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation with empty or all-NA",
                                category=FutureWarning)
        _SCORERS[key] = Scorer(models, config_json, adapt)
    return _SCORERS[key]


def _run_path(models: str, name: str) -> Path:
    """Return the folder of run ``name`` beside the run in use (``models`` is a models folder or a run)."""
    models = Path(models)
    return (models.parent if (models / "manifest.json").is_file() else models) / name


def detector_names(models: str) -> list[str]:
    """Return the detectors of the run in ``models`` (the ``p_<name>`` columns of the records)."""
    from .model.runs import load_series

    ensembles, _ = load_series(models)
    return list(next(iter(ensembles.values())).names)


def output_schema(names: list[str]) -> str:
    """Return the DDL schema of what scoring a group yields: decisions, quarantined lines and incident events
    in one table, told apart by ``kind``."""
    decision = ["timestamp STRING", "value DOUBLE", "score DOUBLE", "p_value DOUBLE", "is_anomaly BOOLEAN",
                "status STRING", "expected DOUBLE"] + [f"p_{name} DOUBLE" for name in names]
    return ", ".join(["kind STRING", "series STRING", *decision, "raw STRING", "reason STRING",
                      "event_id STRING", "event STRING"])


def score_group(models: str, config_json: str, adapt: bool, names: list[str]):
    """Return the function ``applyInPandasWithState`` calls for one series' rows of a micro-batch."""

    def score(key, frames, group_state):
        import pandas as pd

        series = key[0]
        frame = pd.concat(list(frames), ignore_index=True)
        scoring = scorer(models, config_json, adapt)
        rows = _scored(scoring, series, frame, group_state, names)
        yield pd.DataFrame(rows, columns=_columns(names))

    return score


def _columns(names: list[str]) -> list[str]:
    return ["kind", "series", "timestamp", "value", "score", "p_value", "is_anomaly", "status", "expected",
            *[f"p_{name}" for name in names], "raw", "reason", "event_id", "event"]


def _scored(scoring: Scorer, series, frame, group_state, names: list[str]) -> list[list]:
    """Score one series' rows (restoring and updating its state); return the output rows."""
    from .io.parse import parse_csv_lines

    width = len(_columns(names))

    def quarantined(raw: str, reason: str) -> list:
        row = [None] * width
        row[0], row[1], row[-4], row[-3] = "quarantine", series, raw, reason
        return row

    lines = _lines(frame)
    if series is None:  # no key: it cannot be scored, and is kept
        return [quarantined(line, "no series") for line in lines]
    run, ensembles, manifest = scoring.run()
    ensemble = scoring.ensemble(ensembles, manifest, series)
    if ensemble is None:
        return [quarantined(line, "unknown series: the run was not trained on it") for line in lines]
    runner, alarm = _restored(scoring, series, group_state, run, ensemble)
    seen = runner.counts.points + runner.counts.rejected
    chunk = parse_csv_lines(lines, seen + 1, 2, 0, 1)
    texts = np.array([lines[position - seen - 1] for position in chunk.positions.tolist()])
    order = np.lexsort((texts, chunk.timestamps))
    rejected = list(chunk.rejected)
    chunk = chunk.take(order)  # Spark keeps no order inside a group: by timestamp (then text, for ties)
    chunk.rejected = rejected
    block, rejected = runner.process(chunk)
    events = alarm.update(block)
    rows = [quarantined(r.raw, r.reason) for r in rejected]
    rows += _decision_rows(block, series)
    rows += [_event_row(event, series, width) for event in events]
    group_state.update((runner.snapshot({"alarms": alarm.state()}, {"series": series, "run": run}),))
    runner.close()
    return rows


def _restored(scoring: Scorer, series: str, group_state, run: str, ensemble):
    """Return the series' runner and alarm filter, from its state when it has one. State taken with an
    earlier run is restored with that run's models, then the new models are swapped in (as a refit is in
    ``stream.py``: the kept window is rescaled, the calibration starts from the new run's)."""
    from .online.state import peek

    alarm = scoring.alarm(series)
    if not group_state.exists:
        return scoring.runner(ensemble), alarm
    blob = bytes(group_state.get[0])
    before = peek(blob).get("run", run)
    old = ensemble
    if before != run:
        try:
            _, ensembles, manifest = scoring.run(before)
            old = scoring.ensemble(ensembles, manifest, series) or ensemble
        except (FileNotFoundError, KeyError, ValueError, OSError):  # that run is gone: its state fits these models
            old = ensemble
    runner = scoring.runner(old)
    extra, _ = runner.restore(blob)
    alarm.load_state(*extra["alarms"])
    if before != run:
        runner.swap(ensemble)
    return runner, alarm


def _lines(frame) -> list[str]:
    """Return a group's rows as ``timestamp,value`` text lines (missing fields empty: the parser rejects them)."""
    stamps = frame["timestamp"].fillna("").astype(str).tolist()
    values = frame["value"].fillna("").astype(str).tolist()
    return [f"{t},{v}" for t, v in zip(stamps, values)]


def _decision_rows(block, series: str) -> list[list]:
    """Return the decision rows of a block: the fields of ``stream.py``'s records, value for value."""
    from .io.sinks import record_columns

    if not len(block):
        return []
    return [["decision", series, *fields, None, None, None, None] for fields in zip(*record_columns(block).values())]


def _event_row(event, series: str, width: int) -> list:
    from .io.alerts import event_id

    row = [None] * width
    row[0], row[1] = "incident", series
    row[-2] = event_id(event)
    row[-1] = json.dumps({"kind": event.kind, "incident": event.incident.to_dict()})
    return row


# ---------------------------------------------------------------- the job, on the driver
def session(master: str, partitions: int, app: str = "anomaly"):
    """Return a Spark session for the job: RocksDB state, ``partitions`` shuffle partitions, one scoring thread
    per task, Arrow batches for pandas."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["ANOMALY_SCORING_THREADS"] = "1"  # inherited by local workers; executorEnv below for a cluster
    return (SparkSession.builder.master(master).appName(app)
            .config("spark.sql.shuffle.partitions", str(partitions))
            .config("spark.sql.streaming.stateStore.providerClass",
                    "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
            .config("spark.executorEnv.ANOMALY_SCORING_THREADS", "1")
            .config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def read_stream(spark, args):
    """Return the streaming DataFrame of ``series, timestamp, value`` (all text: the scorer parses and
    quarantines)."""
    if args.kafka_bootstrap:
        from pyspark.sql.functions import col, from_json

        raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", args.kafka_bootstrap)
               .option("subscribe", args.topic).load())
        return raw.select(from_json(col("value").cast("string"), SCHEMA).alias("row")).select("row.*")
    return input_files(spark.readStream.option("maxFilesPerTrigger", args.max_files), args.format, args.input)


def input_files(reader, form: str, folder: str):
    """Return the rows of the CSV (with header) or JSON Lines files in ``folder`` through ``reader`` (a
    streaming or a batch reader), every field as text."""
    reader = reader.schema(SCHEMA)
    if form == "json":
        return reader.json(folder)
    return reader.option("header", "true").option("mode", "PERMISSIVE").csv(folder)


def start(spark, args, names: list[str]):
    """Start the streaming query; return it."""
    from pyspark.sql.streaming.state import GroupStateTimeout

    config_json = json.dumps(dataclasses.asdict(_config(args)))
    scored = (read_stream(spark, args).groupBy("series")
              .applyInPandasWithState(score_group(str(Path(args.models).resolve()), config_json, not args.no_adapt,
                                                  names),
                                      output_schema(names), f"{STATE_KEY} BINARY", "append",
                                      GroupStateTimeout.NoTimeout))
    writer = (scored.writeStream.foreachBatch(BatchWriter(args.output, names, _alert_specs(args)))
              .option("checkpointLocation", args.checkpoint))
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger} seconds")
    return writer.start()


class BatchWriter:
    """Writes one micro-batch: decisions and quarantined lines as Parquet (replacing a crashed attempt's),
    then incident events to the alert sinks."""

    def __init__(self, output: str, names: list[str], alerts: dict):
        self.output = str(Path(output).resolve())
        self.names = names
        self.alerts = alerts

    def __call__(self, frame, batch_id: int) -> None:
        from pyspark.sql.functions import col

        frame = frame.persist()
        try:
            decisions = frame.where(col("kind") == "decision").select(_columns(self.names)[1:-4])
            decisions.write.mode("overwrite").parquet(f"{self.output}/decisions/batch={batch_id}")
            quarantine = frame.where(col("kind") == "quarantine").select("series", "raw", "reason")
            quarantine.write.mode("overwrite").parquet(f"{self.output}/quarantine/batch={batch_id}")
            if os.environ.get(CRASH_AT) == str(batch_id):  # fault injection for the tests: records written, not committed
                import signal

                os.killpg(os.getpgid(0), signal.SIGKILL)
            events = frame.where(col("kind") == "incident").select("event_id", "event").collect()
            if events:
                deliver(events, self.alerts)
        finally:
            frame.unpersist()


def _alert_specs(args) -> dict:
    config = _config(args)
    return {"log": args.log or config.stream.log_file, "jsonl": args.alerts or config.alerts.jsonl,
            "webhook": args.alert_webhook or config.alerts.webhook}


def deliver(rows, specs: dict) -> None:
    """Send incident events (rows of ``event_id, event``) to the log, JSON Lines and webhook alert sinks."""
    from .io.alarms import AlarmEvent, Incident
    from .io.alerts import JsonlAlerts, LogAlerts, WebhookAlerts

    sinks = [LogAlerts(specs["log"])]
    if specs.get("jsonl"):
        sinks.append(JsonlAlerts(specs["jsonl"]))
    if specs.get("webhook"):
        sinks.append(WebhookAlerts(specs["webhook"]))
    events = [json.loads(row["event"]) for row in rows]
    events = [AlarmEvent(e["kind"], Incident(**e["incident"])) for e in events]
    # in time order (series apart, each in its own order): when they happened, an incident's opening first
    events.sort(key=lambda e: (e.incident.end if e.kind == "closed" else e.incident.start, e.incident.series,
                               e.incident.id, e.kind == "closed"))
    try:
        for event in events:
            for sink in sinks:
                sink.write(event)
    finally:
        for sink in sinks:
            sink.close()


def _config(args):
    from .config import load_config

    return load_config(args.config)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anomaly.spark",
        description="Score many series inside Spark Structured Streaming: each series keeps its runner's state in "
                    "Spark's checkpointed state store; decision records and quarantined lines are written as Parquet "
                    "exactly once per input point; incident events go to the alert sinks (at least once, each with "
                    "an id). 'python -m anomaly.spark refit --help': the batch job that retrains every series.",
        epilog="example:\n  python -m anomaly.spark --input in/ --models models --output out/ --checkpoint ckpt/ "
               "--available-now",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="a folder of CSV (header series,timestamp,value) or JSON Lines files, "
                                        "read as they appear")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="the input files' format")
    parser.add_argument("--kafka-bootstrap", metavar="HOST:PORT",
                        help="read JSON lines from Kafka instead (needs the cluster's Kafka connector)")
    parser.add_argument("--topic", help="the Kafka topic (with --kafka-bootstrap)")
    parser.add_argument("--models", required=True, help="the models folder (or one run) on storage every worker reads")
    parser.add_argument("--output", required=True,
                        help="where decisions/ and quarantine/ go, as Parquet (one folder per micro-batch)")
    parser.add_argument("--checkpoint", required=True, help="Spark's checkpoint folder: offsets and per-series state")
    parser.add_argument("--master", default="local[2]", help="Spark master (default: local[2])")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--trigger", type=float, default=5.0, metavar="SECONDS",
                      help="a micro-batch every this many seconds (default: 5)")
    when.add_argument("--available-now", action="store_true",
                      help="score what is in --input now, in micro-batches, then stop")
    parser.add_argument("--max-files", type=int, default=100, metavar="N",
                        help="most new input files per micro-batch (default: 100)")
    parser.add_argument("--partitions", type=int, default=4, help="shuffle partitions: series are spread over these "
                                                                  "(default: 4)")
    parser.add_argument("--no-adapt", action="store_true", help="keep the trained calibration as it is")
    parser.add_argument("--config", metavar="TOML", help="settings file (see anomaly.example.toml)")
    parser.add_argument("--log", metavar="FILE", help="incident log (default: anomaly.log)")
    parser.add_argument("--alerts", metavar="JSONL", help="also append incident events to this JSON Lines file")
    parser.add_argument("--alert-webhook", metavar="URL", help="also POST each incident event to this URL")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the streaming job (or, with ``refit`` first, the refit job); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        import pyspark  # noqa: F401
    except ImportError:
        print("python -m anomaly.spark: error: pyspark is not installed: pip install -e \".[spark]\"", file=sys.stderr)
        return 2
    if argv[:1] == ["refit"]:
        return refit_main(argv[1:])
    args = parser().parse_args(argv)
    if not args.input and not args.kafka_bootstrap:
        print("python -m anomaly.spark: error: give --input DIR (or --kafka-bootstrap and --topic)", file=sys.stderr)
        return 2
    try:
        names = detector_names(args.models)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        print(f"python -m anomaly.spark: error: cannot load the run in {args.models}: {exc}", file=sys.stderr)
        return 2
    spark = session(args.master, args.partitions)
    query = start(spark, args, names)
    print(f"streaming {args.input or args.topic} into {args.output} (checkpoint {args.checkpoint}); Ctrl-C to stop",
          file=sys.stderr)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        query.stop()
        print("stopped: what was committed stays; a restart on the same checkpoint goes on from there",
              file=sys.stderr)
        return 130
    finally:
        spark.stop()
    return 0


# ---------------------------------------------------------------- the refit batch job
def refit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anomaly.spark refit",
        description="Retrain every series on the points it has seen, as a Spark batch job (one task per group of "
                    "series), and save the result as a new run in --models: the streaming job picks it up at its "
                    "next micro-batch and goes on with each series' state. The series' own detectors (seasonal, "
                    "forecasting) and calibration are refitted; the run's shared shape models are kept. Points the "
                    "stream flagged (in --output) are left out. A series whose refit fails keeps its models.")
    parser.add_argument("--input", required=True, help="the stream's input folder (CSV or JSON Lines files)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--models", required=True, help="the models folder the stream reads (the new run goes there)")
    parser.add_argument("--output", help="the stream's output folder: its flagged points do not teach")
    parser.add_argument("--history", type=int, metavar="N",
                        help="the most recent points of each series to learn from (default: the run's "
                             "adapt.refit_history, 20,000)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    return parser


def refit_main(argv: list[str]) -> int:
    """``python -m anomaly.spark refit``: retrain every series (see :func:`refit_parser`); return the exit status."""
    from pyspark.sql.functions import lit

    from .model.runs import resolve_run, run_config

    args = refit_parser().parse_args(argv)
    try:
        run = resolve_run(args.models)
        manifest = json.loads((run / "manifest.json").read_text())
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"python -m anomaly.spark refit: error: {exc}", file=sys.stderr)
        return 2
    history = args.history or run_config(manifest).adapt.refit_history
    spark = session(args.master, args.partitions, "anomaly-refit")
    try:
        points = input_files(spark.read, args.format, args.input).where("series IS NOT NULL")
        decisions = Path(args.output or "", "decisions")
        if args.output and decisions.is_dir():
            flagged = spark.read.parquet(str(decisions)).where("is_anomaly").select("series", "timestamp")
        else:
            flagged = spark.createDataFrame([], "series STRING, timestamp STRING")
        trained = (points.groupBy("series").cogroup(flagged.withColumn("flagged", lit(True)).groupBy("series"))
                   .applyInPandas(refit_group(str(run), history), "series STRING, files BINARY, error STRING")
                   .collect())
    finally:
        spark.stop()
    new_run, failed = save_refit(run, manifest, trained)
    print(f"refitted {len(trained) - len(failed)} series into {new_run}"
          + (f"; {len(failed)} kept their models: " + "; ".join(f"{k}: {why}" for k, why in failed[:3])
             if failed else ""), file=sys.stderr)
    return 0


def refit_group(run: str, history: int):
    """Return the function that retrains one series (its input rows and its flagged rows) on a worker."""

    def refit(key, points, flagged):
        import pandas as pd

        series = key[0]
        try:
            files = _refitted(run, series, points, flagged, history)
            return pd.DataFrame([[series, files, None]], columns=["series", "files", "error"])
        except ValueError as exc:
            return pd.DataFrame([[series, None, str(exc)]], columns=["series", "files", "error"])

    return refit


def _refitted(run: str, series: str, points, flagged, history: int) -> bytes:
    """Retrain one series; return its ensemble's files packed as bytes (see :mod:`anomaly.online.state`)."""
    import tempfile
    import time

    from .io.parse import parse_csv_lines, parse_timestamps
    from .model.detectors import SHAPE_LEARNERS
    from .model.runs import run_config
    from .model.training import calibrated, fit_detectors, prepare
    from .online.refit import keeps_promise
    from .online.state import pack

    scoring = scorer(run, json.dumps({}), False)
    _, ensembles, manifest = scoring.run()
    base = Scorer.ensemble(ensembles, manifest, series)
    if base is None:
        raise ValueError("the run does not hold this series")
    config = run_config(manifest)
    chunk = parse_csv_lines(_lines(points), 1, 2, 0, 1)
    order = np.argsort(chunk.timestamps, kind="stable")[-history:]
    timestamps, values = chunk.timestamps[order], chunk.values[order]
    bad, _ = parse_timestamps(flagged["timestamp"].astype(str).tolist())
    exclude = np.isin(timestamps, bad)
    shared = set(manifest.get("shared_detectors", [])) if "series" in manifest else set(base.names) & SHAPE_LEARNERS
    seed = config.training.seed
    prepared = prepare(timestamps, values, config, exclude, base.period or None, base.grid)
    own, fit_seconds = fit_detectors(prepared, [name for name in base.names if name not in shared], seed)
    detectors = {name: base.detectors[name] if name in shared else own[name] for name in base.names}
    ensemble, report = calibrated(prepared, detectors, [], fit_seconds, time.perf_counter())
    keeps_promise(report)
    with tempfile.TemporaryDirectory() as folder:
        ensemble.save(Path(folder), frozenset(shared))
        files = {str(path.relative_to(folder)): np.frombuffer(path.read_bytes(), dtype=np.uint8)
                 for path in Path(folder).rglob("*") if path.is_file()}
    return pack({"files": (files, {"shared": sorted(shared)})}, {"series": series, "points": len(values)})


def save_refit(run: Path, manifest: dict, trained: list) -> tuple[Path, list[tuple[str, str]]]:
    """Save the refitted series (and, unchanged, every series of ``run`` that was not) as a new run beside
    ``run``; return it and the series whose refit failed, with why."""
    import tempfile

    from .model.ensemble import Ensemble
    from .model.runs import load_series, write_run
    from .online.state import unpack

    ensembles, _ = load_series(run)
    shared = {name: detector for name, detector in next(iter(ensembles.values())).detectors.items()}
    new = dict(ensembles)  # series that are not refitted keep their models; a one-series run's under ""
    failed = []
    for row in trained:
        if row["error"]:
            failed.append((row["series"], row["error"]))
            continue
        parts, _ = unpack(bytes(row["files"]))
        files, meta = parts["files"]
        with tempfile.TemporaryDirectory() as folder:
            for name, data in files.items():
                path = Path(folder, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data.tobytes())
            new[row["series"]] = Ensemble.load(Path(folder), {name: shared[name] for name in meta["shared"]})
    report = {key: manifest[key] for key in ("target_far", "measured_far", "points") if key in manifest}
    report |= {"detectors": manifest.get("detectors"), "config": manifest.get("config"),
               "data": {"source": "spark refit", "refit_of": manifest.get("data", {}).get("refit_of") or manifest["run"],
                        "refitted": len(trained) - len(failed), "kept": [key for key, _ in failed]}}
    return write_run(run.parent, new, report), failed


if __name__ == "__main__":
    sys.exit(main())
