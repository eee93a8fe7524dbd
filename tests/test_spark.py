"""The detector inside Spark Structured Streaming, local[2]: the same records as stream.py, exactly once
across a kill -9 of the driver. Skipped only where Java or pyspark is missing (CI has both)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyspark")
pd = pytest.importorskip("pandas")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (openjdk-17-jre-headless)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": "", "SPARK_LOCAL_IP": "127.0.0.1",
       "PYSPARK_PYTHON": sys.executable}
FILES, SERIES, POINTS = 6, 3, 1800  # points per series, spread over FILES input files in time order


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three interleaved series (anomalies injected), as one CSV for stream.py and as FILES files for Spark."""
    from anomaly.io.sinks import format_timestamps
    from anomaly.simulate import simulate

    folder = tmp_path_factory.mktemp("spark")
    series = {f"host-{k}": simulate(POINTS, seed=20 + k, anomalies=True, start_index=30_000) for k in range(SERIES)}
    stamps = {key: format_timestamps(s.timestamps) for key, s in series.items()}
    rows = [f"{key},{stamps[key][i]},{s.values[i]:.4f}" for i in range(POINTS) for key, s in series.items()]
    rows.insert(len(rows) // 2, "host-1,not a time,12")  # a bad line: quarantined, never lost
    (folder / "all.csv").write_text("series,timestamp,value\n" + "\n".join(rows) + "\n")
    (folder / "input").mkdir()
    size = -(-len(rows) // FILES)
    for j in range(FILES):
        path = folder / "input" / f"part-{j}.csv"
        path.write_text("series,timestamp,value\n" + "\n".join(rows[j * size:(j + 1) * size]) + "\n")
        os.utime(path, (1e9 + 10 * j, 1e9 + 10 * j))  # the order they arrived in
    return folder


@pytest.fixture(scope="module")
def reference(data, quick_run):
    """stream.py's records of the same data and run, by series and time (its incident events: stream-alerts.jsonl)."""
    result = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(quick_run), "--source",
                             "all.csv", "--rate", "0", "--no-plot", "--output", "stream.jsonl", "--quiet",
                             "--alerts", "stream-alerts.jsonl"],
                            cwd=data, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = pd.DataFrame([json.loads(line) for line in open(data / "stream.jsonl")])
    return records.sort_values(["series", "timestamp"]).reset_index(drop=True)


def spark_job(data: Path, run: Path, name: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "anomaly.spark", "--input", "input", "--models", str(run),
                             "--output", f"{name}-out", "--checkpoint", f"{name}-checkpoint", "--available-now",
                             "--max-files", "1", "--partitions", "2", "--log", f"{name}.log",
                             "--alerts", f"{name}-alerts.jsonl"],
                            cwd=data, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finished(process: subprocess.Popen, timeout: float = 400) -> str:
    """Wait for a job to succeed; return its stderr."""
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


def same_records(spark: pd.DataFrame, reference: pd.DataFrame) -> None:
    spark = spark.sort_values(["series", "timestamp"]).reset_index(drop=True)[list(reference.columns)]
    assert len(spark) == len(reference)
    for column in reference.columns:
        if column in ("series", "timestamp", "status"):
            assert (spark[column] == reference[column]).all(), column
        elif column == "is_anomaly":
            assert (spark[column].astype(bool) == reference[column].astype(bool)).all()
        else:  # value for value: the same floats, the same rounding
            assert np.array_equal(spark[column].astype(float).to_numpy(), reference[column].astype(float).to_numpy(),
                                  equal_nan=True), column


@pytest.mark.slow
def test_killed_9_mid_batch_and_restarted_the_job_gives_each_series_the_records_stream_py_gives_it_once(
        data, quick_run, reference):
    from anomaly.spark import CRASH_AT

    # killed at the worst moment: batch 2's records are written, the batch is not committed
    job = spark_job(data, quick_run, "crash", env={**ENV, CRASH_AT: "2"})
    job.wait(timeout=400)
    assert job.returncode == -signal.SIGKILL
    decisions = data / "crash-out" / "decisions"
    assert (decisions / "batch=2").exists() and not (decisions / "batch=3").exists()
    stderr = finished(spark_job(data, quick_run, "crash"))  # the same checkpoint: batch 2 is run again
    assert "Warning" not in stderr  # (pyspark's workers made pandas warn at every batch)
    records = pd.read_parquet(decisions)
    assert records["batch"].nunique() == FILES  # one micro-batch per file: state carried across them
    assert not records.duplicated(["series", "timestamp"]).any()  # exactly once...
    same_records(records, reference)  # ...every point, with stream.py's decisions
    assert reference["is_anomaly"].any()
    quarantine = pd.read_parquet(data / "crash-out" / "quarantine")
    assert quarantine[["series", "raw"]].values.tolist() == [["host-1", "not a time,12"]]
    events = [json.loads(line) for line in open(data / "crash-alerts.jsonl")]
    opened = [e for e in events if e["event"] == "opened"]
    assert opened and {e["incident"]["series"] for e in opened} <= {f"host-{k}" for k in range(SERIES)}
    # the kill came before batch 2's events were sent; its rerun sent them: each event once, with stream.py's id
    assert len({e["id"] for e in events}) == len(events)
    assert {e["id"] for e in events} == {json.loads(line)["id"] for line in open(data / "stream-alerts.jsonl")}


@pytest.mark.slow
def test_a_refit_job_makes_a_new_run_that_the_stream_picks_up_at_its_next_batch(data, quick_run, reference,
                                                                                 tmp_path):
    from anomaly.model.runs import _point_latest, latest_run, load_series

    models = data / "refit-models"
    shutil.copytree(quick_run, models / quick_run.name)
    _point_latest(models, quick_run.name)
    early = data / "refit-input"
    early.mkdir()
    for j in range(3):  # the first half arrives
        shutil.copy2(data / "input" / f"part-{j}.csv", early)
    command = [sys.executable, "-m", "anomaly.spark", "--input", str(early), "--models", str(models), "--output",
               "refit-out", "--checkpoint", "refit-checkpoint", "--available-now", "--max-files", "1",
               "--partitions", "2", "--log", "refit.log"]
    finished(subprocess.Popen(command, cwd=data, env=ENV, stderr=subprocess.PIPE, text=True))
    refit = subprocess.run([sys.executable, "-m", "anomaly.spark", "refit", "--input", str(early), "--models",
                            str(models), "--output", "refit-out", "--partitions", "2"],
                           cwd=data, env=ENV, capture_output=True, text=True, timeout=400)
    assert refit.returncode == 0, refit.stderr[-3000:]
    refitted = int(re.search(r"refitted (\d+) series", refit.stderr).group(1))
    assert refitted >= SERIES - 1  # 900 points of a series may leave too few clean ones to calibrate on
    new_run = latest_run(models)
    assert new_run.name != quick_run.name
    ensembles, manifest = load_series(new_run)
    assert manifest["data"]["source"] == "spark refit" and manifest["data"]["refit_of"] == quick_run.name
    kept = set(manifest["data"]["kept"])  # a series whose refit failed keeps its models, saying why
    assert len(kept) == SERIES - refitted
    assert set(ensembles) == {"", *({f"host-{k}" for k in range(SERIES)} - kept)}  # "": any other series
    one, two = [ensembles[key] for key in sorted(set(ensembles) - {""})][:2]
    shapes = {name for name in one.names if one.detectors[name] is two.detectors[name]}
    assert shapes == {"dense_ae"}  # the shape model is kept and shared; the rest is each series' own
    for j in range(3, FILES):  # the second half arrives: scored with the new run, the state going on
        shutil.copy2(data / "input" / f"part-{j}.csv", early)
    finished(subprocess.Popen(command, cwd=data, env=ENV, stderr=subprocess.PIPE, text=True))
    records = pd.read_parquet(data / "refit-out" / "decisions").sort_values(["series", "timestamp"])
    assert not records.duplicated(["series", "timestamp"]).any() and len(records) == len(reference)
    later = records["batch"].astype(int) >= 3
    first = records[~later].reset_index(drop=True)
    same_records(first, reference[reference["timestamp"].isin(first["timestamp"])
                                  & reference.set_index(["series", "timestamp"]).index.isin(
                                      first.set_index(["series", "timestamp"]).index)].reset_index(drop=True))
    assert (records[later]["status"] == "ok").all()  # no warm-up again: each series' window went on
    new = records[later & ~records["series"].isin(kept)]
    changed = new["p_shesd"].to_numpy() != reference.set_index(["series", "timestamp"]).loc[
        list(zip(new["series"], new["timestamp"])), "p_shesd"].to_numpy()
    assert changed.mean() > 0.5  # the new models decide from the first point of the next batch
