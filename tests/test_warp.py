"""The variance-stabilising warp: exact both ways, chosen from the history by the data, recorded in the run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from anomaly.config import Config
from anomaly.model.warp import Warp, choose_warp
from anomaly.model.windows import Scaler


@pytest.mark.parametrize("warp", [Warp(), Warp("sqrt", 0.375), Warp("log", 1.0), Warp("log", 40.0)])
def test_a_warp_is_undone_exactly_and_defined_below_zero(warp):
    values = np.array([-50.0, -1.0, -1e-9, 0.0, 1e-9, 0.3, 1.0, 7.0, 120.0, 3e6])
    warped = warp.forward(values)
    assert np.isfinite(warped).all() and (np.diff(warped) > 0).all()  # every value, in order
    np.testing.assert_allclose(warp.inverse(warped), values, rtol=1e-9, atol=1e-9)
    scaler = Scaler.fit(np.abs(values) + 1, warp)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values, rtol=1e-9, atol=1e-9)


def test_a_bad_warp_is_a_clear_error():
    with pytest.raises(ValueError, match="warp kind must be one of"):
        Warp("cube")
    with pytest.raises(ValueError, match="positive offset"):
        Warp("log", 0.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_data_chooses_the_warp(seed):
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * np.arange(600) / 144)
    assert choose_warp(rng.poisson(3 * np.exp(0.9 * day)).astype(float)).kind == "sqrt"  # counts: Anscombe's
    assert choose_warp(120 * np.exp(0.25 * day + 0.45 * rng.normal(size=600))).kind == "log"  # latencies
    assert choose_warp(50 + 10 * day + rng.normal(size=600)).kind == "none"  # additive noise
    steps = np.repeat(rng.integers(2, 12, size=20), 30).astype(float)
    assert choose_warp(steps).kind == "none"  # a value held: nothing to stabilise
    assert choose_warp(-5 + rng.normal(size=600)).kind == "none"  # below 0: none may warp


def test_training_records_the_warp_it_chose_and_the_expected_band_is_in_the_series_units(quick_config):
    from anomaly.model.training import train

    rng = np.random.default_rng(3)
    n = 3000
    day = np.sin(2 * np.pi * np.arange(n) / 144)
    latencies = 120 * np.exp(0.25 * day + 0.45 * rng.normal(size=n))
    config = dataclasses.replace(quick_config, training=dataclasses.replace(quick_config.training, warp="auto"))
    ensemble, report = train(600.0 * np.arange(n), latencies, config)
    assert report["warp"]["kind"] == "log" and ensemble.scaler.warp == "log"
    assert Config().training.warp == "none"  # (the default: see the README)
    d = ensemble.decide(ensemble.scaler.transform(latencies), ensemble.grid.positions(600.0 * np.arange(n)))
    assert 60 < np.median(d.expected) < 240 and 10 < np.median(d.spread) < 200  # milliseconds, as the values
