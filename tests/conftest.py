"""Shared fixtures: one quickly trained run for the whole session (tiny models, fixed seeds)."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from anomaly.config import Config, quick  # noqa: E402
from anomaly.model.runs import load_run, write_run  # noqa: E402
from anomaly.model.training import train  # noqa: E402
from anomaly.simulate import simulate  # noqa: E402


@pytest.fixture(scope="session")
def quick_config() -> Config:
    return quick(Config())


@pytest.fixture(scope="session")
def quick_run(quick_config, tmp_path_factory):
    """A quick ensemble trained on simulated normal data (seed 0) and saved; returns the run folder."""
    series = simulate(quick_config.training.n_points, seed=0, config=quick_config.simulator)
    ensemble, report = train(series.timestamps, series.values, quick_config, seed=0)
    report["data"] = {"source": "simulator", "seed": 0}
    return write_run(tmp_path_factory.mktemp("models"), ensemble, report)


@pytest.fixture(scope="session")
def family_run(quick_config, tmp_path_factory):
    """A quick run holding every registered detector (the default ensemble holds four); its folder."""
    from anomaly.model.detectors import REGISTRY

    config = dataclasses.replace(quick_config, ensemble=dataclasses.replace(quick_config.ensemble,
                                                                            detectors=tuple(REGISTRY)))
    series = simulate(config.training.n_points, seed=0, config=config.simulator)
    ensemble, report = train(series.timestamps, series.values, config, seed=0)
    return write_run(tmp_path_factory.mktemp("family"), ensemble, report)


@pytest.fixture(scope="session")
def quick_ensemble(quick_run):
    return load_run(quick_run)[0]


@pytest.fixture(scope="session")
def second_ensemble(quick_config):
    """A quick ensemble trained with another seed, on another simulated history (for statistical claims)."""
    history = simulate(quick_config.training.n_points, seed=1, config=quick_config.simulator)
    return train(history.timestamps, history.values, quick_config, seed=1)[0]


def score_series(ensemble, series):
    """Return per-point decisions arrays for a whole series, NaN/False for warm-up points."""
    d = ensemble.decide(ensemble.scaler.transform(series.values), ensemble.grid.positions(series.timestamps))
    first = ensemble.window - 1
    n = len(series.values)
    p = np.ones(n)
    p[first:] = d.p_value
    p_det = np.ones((n, len(ensemble.names)))
    p_det[first:] = d.p_detectors
    return p, p_det, first
