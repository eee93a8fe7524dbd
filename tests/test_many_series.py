"""A run of many series (train.py --series-column ... --per-series-models): each series gets its own scaling and
calibration, a series too short to train is named, and the stream quarantines series the run does not know."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.io.records import Chunk
from anomaly.io.sinks import format_timestamps
from anomaly.model.runs import load_run, load_series
from anomaly.model.trainer import train_series_and_save
from anomaly.online.keyed import KeyedRunners
from anomaly.online.runner import Runner
from anomaly.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
HISTORY = 10_000
SCALES = {"cpu": 1.0, "latency-ms": 40.0, "bytes": 1e5}


def many_csv(path: Path, n: int, seeds: dict[str, int], start: int = 0, anomalies: bool = False, config=None):
    """Write interleaved simulated series with a 'series' column; return them. The series of SCALES are ``n``
    points long and scaled so; any other is 60 points long."""
    rows, series = [], {}
    for key, seed in seeds.items():
        one = simulate(n if key in SCALES else 60, seed=seed, anomalies=anomalies, start_index=start, config=config)
        series[key] = one
        scale = SCALES.get(key, 1.0)
        rows += [(i, f"{t},{key},{v * scale!r}\n")
                 for i, (t, v) in enumerate(zip(format_timestamps(one.timestamps), one.values.tolist()))]
    path.write_text("timestamp,series,value\n" + "".join(line for _, line in sorted(rows, key=lambda r: r[0])))
    return series


@pytest.fixture(scope="module", params=["pooled", "per-series"])
def many_run(request, quick_config, tmp_path_factory):
    """A run of three series of very different scales (and one too short to train): the shape learners pooled
    over all series (the default), or one complete ensemble per series (--per-series-models)."""
    folder = tmp_path_factory.mktemp("many")
    many_csv(folder / "history.csv", HISTORY, {"cpu": 71, "latency-ms": 72, "bytes": 73, "short": 74},
             config=quick_config.simulator)
    return train_series_and_save(quick_config, folder / "models", str(folder / "history.csv"), "series",
                                 per_series_models=request.param == "per-series")


def test_each_series_keeps_its_own_scaling_and_a_short_one_is_named(many_run):
    ensembles, manifest = load_series(many_run)
    assert sorted(ensembles) == sorted(SCALES)
    assert "at least 100 points" in manifest["untrained"]["short"]
    scales = {key: ensemble.scaler.scale for key, ensemble in ensembles.items()}
    assert scales["bytes"] > 1e4 * scales["cpu"]  # each series is scaled by its own spread
    periods = {ensemble.period for ensemble in ensembles.values()}
    assert periods == {144}  # each found its own daily cycle
    with pytest.raises(ValueError, match="3 series"):
        load_run(many_run)


def test_pooled_shape_learners_are_saved_once_and_loaded_once(many_run):
    ensembles, manifest = load_series(many_run)
    autoencoders = {id(ensemble.detectors["dense_ae"]) for ensemble in ensembles.values()}
    seasonal = {id(ensemble.detectors["shesd"]) for ensemble in ensembles.values()}
    assert len(seasonal) == 3  # a seasonal profile is always the series' own
    if manifest["data"]["per_series_models"]:
        assert len(autoencoders) == 3 and manifest["shared_detectors"] == []
    else:
        assert len(autoencoders) == 1 and manifest["shared_detectors"] == ["dense_ae"]
        assert len(list(many_run.rglob("model.onnx"))) == 1


def test_the_false_alarm_rate_holds_for_every_series_on_fresh_normal_data(many_run, quick_config):
    ensembles, _ = load_series(many_run)
    keyed = KeyedRunners(lambda key: Runner(ensembles[key]))
    p = {key: [] for key in SCALES}
    for key, seed in (("cpu", 81), ("latency-ms", 82), ("bytes", 83)):
        fresh = simulate(30_000, seed=seed, start_index=HISTORY, config=quick_config.simulator)
        [result] = keyed.process(Chunk(fresh.timestamps, fresh.values * SCALES[key], np.arange(1, 30_001),
                                       series=[key] * 30_000))
        p[key] = result.block.p_value[~result.block.warmup]
    for key, values in p.items():
        observed = float(np.mean(values < 1e-2))
        assert 0.5e-2 <= observed <= 2e-2, (key, observed)


def test_stream_py_scores_known_series_and_quarantines_the_others(many_run, quick_config, tmp_path):
    live = many_csv(tmp_path / "live.csv", 1_500, {"cpu": 91, "bytes": 92, "printer": 93}, start=HISTORY,
                    anomalies=True, config=quick_config.simulator)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(many_run), "--source",
                             "live.csv", "--rate", "0", "--no-plot", "--quiet", "--output", "out.jsonl"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 series not in the run, their points quarantined: printer" in result.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["series"] for r in records} == {"cpu", "bytes"} and len(records) == 3_000
    for key in ("cpu", "bytes"):
        mine = [r for r in records if r["series"] == key and r["status"] == "ok"]
        assert 0 < sum(r["is_anomaly"] for r in mine) < 0.2 * len(mine)  # its own scale: events, not everything
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantined) == len(live["printer"].values) and {q["series"] for q in quarantined} == {"printer"}


@pytest.mark.slow
def test_fitting_series_in_worker_processes_gives_the_same_run_as_in_one(quick_config):
    """The series' own detectors fit in one process per core: the ensembles are those of a single process."""
    from anomaly.model.training import train_pooled

    histories = {f"s{i}": (lambda one: (one.timestamps, one.values))(
        simulate(3_000, seed=200 + i, config=quick_config.simulator)) for i in range(8)}
    one_process = train_pooled(histories, quick_config, workers=1)[0]
    two_processes = train_pooled(histories, quick_config, workers=2)[0]
    assert sorted(one_process) == sorted(two_processes) == sorted(histories)
    for key, ensemble in one_process.items():
        other = two_processes[key]
        for name in ("shesd", "holt_winters", "ewma"):
            assert np.array_equal(ensemble.calibrators_[name].sorted_, other.calibrators_[name].sorted_), (key, name)
        assert np.array_equal(ensemble.combined_.sorted_, other.combined_.sorted_)


@pytest.mark.slow
def test_the_false_alarm_rate_holds_for_each_of_twenty_series_of_one_shared_model(quick_config):
    """Twenty series of different scales, levels and seeds, one pooled run: each series' own calibration keeps
    its flagged share of fresh normal points within 0.5x-2x of the target."""
    from anomaly.model.training import train_pooled

    rng = np.random.default_rng(5)
    shapes = {f"s{i}": (10 ** rng.uniform(-2, 4), rng.uniform(-1e3, 1e3)) for i in range(20)}
    histories = {}
    for i, (key, (scale, level)) in enumerate(shapes.items()):
        one = simulate(8_000, seed=300 + i, config=quick_config.simulator)
        histories[key] = (one.timestamps, one.values * scale + level)
    ensembles, _, untrained = train_pooled(histories, quick_config)
    assert not untrained and len(ensembles) == 20
    keyed = KeyedRunners(lambda key: Runner(ensembles[key]))
    for i, (key, (scale, level)) in enumerate(shapes.items()):
        fresh = simulate(20_000, seed=400 + i, start_index=8_000, config=quick_config.simulator)
        [result] = keyed.process(Chunk(fresh.timestamps, fresh.values * scale + level, np.arange(1, 20_001),
                                       series=[key] * 20_000))
        observed = float(np.mean(result.block.p_value[~result.block.warmup] < 1e-2))
        assert 0.5e-2 <= observed <= 2e-2, (key, observed)


def test_a_live_stream_of_many_series_writes_the_records_a_replay_writes(many_run, quick_config, tmp_path):
    """Paced, each line comes alone and series take turns: their points are scored in ticks (anomaly.ticks);
    a replay reads blocks and scores each series' part on its own. The records are the same, byte for byte."""
    many_csv(tmp_path / "live.csv", 600, {"cpu": 94, "latency-ms": 95, "bytes": 96}, start=HISTORY, anomalies=True,
             config=quick_config.simulator)
    lines = (tmp_path / "live.csv").read_text().splitlines()
    lines[700] = lines[700].rsplit(",", 1)[0] + ",nan"  # a bad point in one series
    (tmp_path / "live.csv").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    for rate in ("0", "3000"):
        result = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(many_run), "--source",
                                 "live.csv", "--rate", rate, "--no-plot", "--quiet", "--output", f"out-{rate}.jsonl",
                                 "--quarantine", f"quarantine-{rate}.jsonl"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    replayed, live = (tmp_path / "out-0.jsonl").read_text(), (tmp_path / "out-3000.jsonl").read_text()
    assert len(replayed.splitlines()) == 3 * 600 - 1 + 1  # the bad point's gap is filled when its series goes on
    assert live == replayed and '"is_anomaly": true' in live
    assert (tmp_path / "quarantine-3000.jsonl").read_text() == (tmp_path / "quarantine-0.jsonl").read_text()
