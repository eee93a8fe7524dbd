"""Runs are verified before they are trusted (issue 14): hashed files, no pickles, atomic and locked writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from anomaly.model.runs import LATEST, check_writable, latest_run, load_run, locked, write_run

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}


@pytest.fixture
def run_copy(quick_run, tmp_path) -> Path:
    """A copy of the session's quick run, in a models folder of its own, free to damage."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(quick_run, models / quick_run.name)
    (models / LATEST).write_text(quick_run.name + "\n")
    return models / quick_run.name


def stream_error(models: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(models), "--no-plot",
                           "--limit", "10"], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def test_every_file_of_a_run_is_hashed_in_its_manifest(run_copy):
    manifest = json.loads((run_copy / "manifest.json").read_text())
    files = {p.relative_to(run_copy).as_posix() for p in run_copy.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert all(len(digest) == 64 for digest in manifest["files"].values())


def test_changed_bytes_in_an_onnx_graph_are_refused_with_one_line_naming_the_file(run_copy, tmp_path):
    graph = run_copy / "detectors" / "dense_ae" / "model.onnx"
    data = bytearray(graph.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(data), 64, replace=False):
        data[i] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.onnx: changed or truncated"):
        load_run(run_copy)
    result = stream_error(run_copy.parent, tmp_path)
    assert result.returncode == 2 and "model.onnx" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["calibration.npz", "detectors/shesd/state.npz", "detectors/dense_ae/model.onnx"])
def test_a_truncated_file_is_a_one_line_error_not_a_traceback(run_copy, tmp_path, name):
    path = run_copy / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = stream_error(run_copy.parent, tmp_path)
    assert result.returncode == 2 and name.split("/")[-1] in result.stderr and "Traceback" not in result.stderr


def test_nothing_in_a_run_is_a_pickle_and_a_planted_one_is_never_loaded(family_run, tmp_path):
    run_copy = tmp_path / family_run.name  # every registered detector's files
    shutil.copytree(family_run, run_copy)
    assert not list(run_copy.rglob("*.joblib")) and not list(run_copy.rglob("*.pkl"))
    for path in run_copy.rglob("*.npz"):
        with np.load(path, allow_pickle=False) as arrays:  # raises if any array needed pickle
            [arrays[key] for key in arrays.files]
    # a pickle that would run code if it were unpickled, planted where an old run kept its forest
    marker = run_copy.parent / "pwned"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (run_copy / "detectors" / "iforest" / "forest.joblib").write_bytes(payload)
    (run_copy / "detectors" / "iforest" / "compiled.npz").unlink()
    with pytest.raises(ValueError):
        load_run(run_copy)
    assert not marker.exists()


def test_a_run_without_file_hashes_is_refused(run_copy):
    manifest = json.loads((run_copy / "manifest.json").read_text())
    del manifest["files"]
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="without file hashes"):
        load_run(run_copy)


def test_staging_folders_left_by_a_killed_training_are_removed_by_the_next_one(run_copy, quick_ensemble):
    models = run_copy.parent
    old, fresh = models / ".tmp-killed", models / ".tmp-another-writer"
    for folder in (old, fresh):
        (folder / "detectors").mkdir(parents=True)
        (folder / "detectors" / "half.npz").write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    write_run(models, quick_ensemble, {"data": {"source": "test"}})
    assert not old.exists() and fresh.exists()  # a staging folder younger than an hour may be in use


@pytest.mark.slow
def test_train_checks_that_models_is_writable_before_it_trains(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere chmod forbids; /sys refuses new folders to everyone
        models = Path("/sys/anomaly-models")
    else:
        models = tmp_path / "read-only"
        models.mkdir()
        models.chmod(0o555)
    with pytest.raises(OSError):
        check_writable(models)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--models", str(models)], cwd=tmp_path,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "cannot save runs in" in result.stderr
    assert "training on" not in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_a_refit_never_moves_latest_past_a_run_trained_meanwhile(run_copy, quick_ensemble):
    models, parent = run_copy.parent, run_copy.name
    moved = []

    def refit_save():  # as refit.train_refit does: move LATEST only if it still names the stream's run
        moved.append(write_run(models, quick_ensemble, {"data": {"source": "refit", "refit_of": parent}},
                               move_latest=lambda current: current is not None and current.name == parent))

    with locked(models):  # a train.py holds the lock and moves LATEST meanwhile
        refit = threading.Thread(target=refit_save)
        refit.start()
        time.sleep(1.0)
        assert refit.is_alive()  # its run is written, but LATEST waits for the lock
        trained = write_run(models, quick_ensemble, {"data": {"source": "train"}}, move_latest=False)
        (models / LATEST).write_text(trained.name + "\n")
    refit.join(timeout=30)
    assert moved and moved[0].is_dir() and latest_run(models) == trained
