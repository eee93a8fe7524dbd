"""The classic detectors beside the learned ones (issue 15): chosen by settings, calibrated like the others."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.config import Config, quick
from anomaly.model.detectors import REGISTRY
from anomaly.model.training import train
from anomaly.simulate import Simulator, simulate

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}
CLASSIC = ("ocsvm", "kmeans", "zscore", "ewma", "holt_winters", "adwin")


@pytest.fixture(scope="module")
def classic_ensemble():
    """A quick ensemble of the forest, S-H-ESD and every classic detector (no network: seconds to train)."""
    config = quick(Config())
    config = dataclasses.replace(config, ensemble=dataclasses.replace(
        config.ensemble, detectors=("iforest", "shesd", *CLASSIC)))
    history = simulate(config.training.n_points, seed=0, config=config.simulator)
    return train(history.timestamps, history.values, config, seed=0)[0]


def test_each_classic_detector_keeps_the_false_alarm_rate_on_fresh_normal_data(classic_ensemble):
    ensemble = classic_ensemble
    fresh = simulate(20_000, seed=5, start_index=30_000)
    decided = ensemble.decide(ensemble.scaler.transform(fresh.values), ensemble.grid.positions(fresh.timestamps))
    for i, name in enumerate(ensemble.names):
        rate = float((decided.p_detectors[:, i] < ensemble.alpha).mean())
        assert rate < 3 * ensemble.alpha, (name, rate)  # 20,000 points: 20 expected at the target
    assert decided.is_anomaly.mean() < 3 * ensemble.alpha


def test_classic_detectors_find_spikes_and_dips(classic_ensemble):
    ensemble = classic_ensemble
    stream = Simulator(seed=3, anomalies=True, start_index=30_000).generate(20_000)
    decided = ensemble.decide(ensemble.scaler.transform(stream.values), ensemble.grid.positions(stream.timestamps))
    kinds = stream.kinds[ensemble.window - 1:]
    for name in ("ocsvm", "kmeans", "ewma", "holt_winters"):
        flagged = decided.p_detectors[:, ensemble.names.index(name)] < ensemble.alpha
        for kind in ("spike", "dip"):
            assert flagged[kinds == kind].mean() > 0.5, (name, kind)


def test_the_one_class_svm_scores_as_scikit_learn_does():
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDOneClassSVM

    from anomaly.model.windows import sliding

    rng = np.random.default_rng(0)
    windows = sliding(np.sin(np.arange(2000) / 5) + 0.1 * rng.normal(size=2000), 16)
    detector = REGISTRY["ocsvm"](window=16, n_components=40, seed=3).fit(windows)
    features = detector._standardise(detector.features(windows))
    kernel = Nystroem(gamma=detector._gamma, n_components=40, random_state=3).fit(features)
    svm = SGDOneClassSVM(nu=detector.nu, random_state=3).fit(kernel.transform(features))
    np.testing.assert_allclose(detector.score(windows), -svm.decision_function(kernel.transform(features)),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_train_py_builds_the_ensemble_its_detectors_flag_names_and_records_it(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--quick", "--detectors", "zscore,ewma,kmeans",
                             "--models", "m"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    run = tmp_path / result.stdout.split("saved ")[1].strip()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["detectors"] == ["zscore", "ewma", "kmeans"]
    assert manifest["config"]["ensemble"]["detectors"] == ["zscore", "ewma", "kmeans"]
    streamed = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", "m", "--limit", "300", "--rate",
                               "0", "--no-plot", "--quiet", "--output", "out.jsonl"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)
    assert streamed.returncode == 0, streamed.stderr
    record = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert {"p_zscore", "p_ewma", "p_kmeans"} <= set(record) and "p_dense_ae" not in record


def test_an_unknown_detector_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--quick", "--detectors", "zscore,svm"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--detectors" in result.stderr and "holt_winters" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
