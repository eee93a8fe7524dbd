"""Replays are deterministic: a refit is applied where the data asked for it, and the replay waits for it
there, so a file gives the same verdicts on an idle or a busy machine, and the same as the evaluation."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.config import SimulatorConfig
from anomaly.evaluate import stream_file
from anomaly.io.sinks import format_timestamps
from anomaly.model.runs import load_run, run_config
from anomaly.online.refit import Refitter
from anomaly.simulate import Simulator, simulate

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}


def _burn(seconds: float) -> None:  # pragma: no cover (a child process)
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def replay(cwd: Path, output: str) -> tuple[list[dict], str]:
    result = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", "models", "--source", "data.csv",
                             "--rate", "0", "--no-plot", "--quiet", "--output", output],
                            cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (cwd / output).read_text().splitlines()], result.stderr


@pytest.mark.slow
def test_a_replay_decides_alike_on_a_busy_machine_and_as_the_evaluation_does(tmp_path):
    # a calm history, then a slightly noisier regime with anomalies: refits are asked for, and one earns its swap
    # (at 2.5 times the noise, recalibration alone now learns the new regime within 300 points, and the refits
    # tie with the models in use and are turned down: nothing to replay)
    calm = Simulator(SimulatorConfig(), seed=21).generate(2500)
    later = simulate(3500, seed=22, anomalies=True, start_index=2500,
                     config=dataclasses.replace(SimulatorConfig(), noise_sd=1.3))
    timestamps, values = np.r_[calm.timestamps, later.timestamps], np.r_[calm.values, later.values]
    rows = "".join(f"{t},{float(v)!r}\n" for t, v in zip(format_timestamps(timestamps), values))
    (tmp_path / "data.csv").write_text("timestamp,value\n" + rows)
    trained = subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", "data.csv", "--head", "1500",
                              "--quick", "--models", "models"], cwd=tmp_path, env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    ensemble, manifest = load_run(tmp_path / "models")  # the run as trained, before any refit moves LATEST

    idle, summary = replay(tmp_path, "idle.jsonl")
    assert "still training" not in summary, summary
    assert int(re.search(r"models retrained (\d+) times", summary).group(1)) >= 1, summary  # a swap to replay
    burners = [multiprocessing.get_context("spawn").Process(target=_burn, args=(120,)) for _ in range(3)]
    for burner in burners:
        burner.start()
    try:
        (tmp_path / "models" / "LATEST").write_text(manifest["run"])  # start from the same run again
        busy, _ = replay(tmp_path, "busy.jsonl")
    finally:
        for burner in burners:
            burner.terminate()
    assert len(idle) == len(busy) == 6000
    assert idle == busy  # every field of every record

    config = run_config(manifest)
    evaluated = stream_file(ensemble, tmp_path / "data.csv", adapt=config.adapt,
                            refitter=Refitter(config, trained_on=manifest["points"], background=False))
    np.testing.assert_array_equal(evaluated.flags, [r["is_anomaly"] for r in idle])
    assert evaluated.flags.sum() >= 5
