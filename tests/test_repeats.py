"""Stuck values: the repeats detector's model, its unit tail, and its evidence standing beside the combination."""

from __future__ import annotations

import dataclasses

import numpy as np

from anomaly.config import Config
from anomaly.model.calibration import Calibrator, analytic_p_value, combine
from anomaly.model.detectors.repeats import Repeats
from anomaly.model.windows import sliding


def fitted(values: np.ndarray, window: int = 32) -> Repeats:
    return Repeats(window=window).fit(sliding(values, window))


def run_of(value: float, before: np.ndarray, repeats: int) -> np.ndarray:
    """A window ending in ``repeats`` repeats of ``value`` after ``before``."""
    return np.concatenate([before, np.full(repeats + 1, value)])[None, -32:]


def model_p(detector: Repeats, window: np.ndarray) -> float:
    return float(np.exp(-detector.score(window)[0]))


def test_a_continuous_value_repeated_once_is_not_alarming_but_three_in_a_row_are():
    rng = np.random.default_rng(1)
    detector = fitted(rng.normal(size=700))
    tail = rng.normal(size=40)
    assert 1e-3 < model_p(detector, run_of(0.3, tail, 1)) < 1e-2  # one repeat in 700 points: Laplace's rate
    assert model_p(detector, run_of(0.3, tail, 2)) < 1e-5
    assert detector.score(run_of(0.3, tail, 0))[0] == 0  # no repeat, no evidence


def test_a_count_sits_at_zero_for_a_while_but_not_for_long():
    rng = np.random.default_rng(2)
    counts = rng.poisson(np.exp(1.2 * np.sin(np.arange(3000) * 2 * np.pi / 144)))  # many zeros at night
    detector = fitted(counts.astype(float))
    before = np.ones(40)
    assert model_p(detector, run_of(0.0, before, 4)) > 1e-2
    assert model_p(detector, run_of(0.0, before, 25)) < 1e-6
    assert model_p(detector, run_of(3.0, before, 10)) < 1e-4  # a count stuck at 3 repeats far less often


def test_a_level_never_seen_is_held_as_the_series_holds_its_levels():
    rng = np.random.default_rng(3)
    level = np.cumsum(np.where(rng.random(3000) < 1 / 30, rng.choice([-1.0, 1.0], 3000), 0.0)) + 8
    detector = fitted(level)
    assert model_p(detector, run_of(level.max() + 5, np.full(40, level[-1]), 30)) > 0.1


def test_the_unit_tail_takes_the_model_beyond_the_sample():
    zeros = Calibrator(unit_tail=True).fit(np.zeros(200))
    np.testing.assert_allclose(zeros.p_value(np.array([3.0, 9.0])), np.exp([-3.0, -9.0]), rtol=0.01)
    some = Calibrator(unit_tail=True).fit(np.r_[np.zeros(196), np.full(4, 5.0)])
    np.testing.assert_allclose(some.p_value(np.array([5.0])), 4 / 201)  # at the sample's top: as often as it came
    np.testing.assert_allclose(some.p_value(np.array([8.0])), 4 / 201 * np.exp(-3.0), rtol=1e-6)


def test_a_flatline_is_found_and_its_evidence_stands_beside_the_combination():
    from anomaly.model.training import train
    from anomaly.simulate import simulate

    config = dataclasses.replace(Config(), ensemble=dataclasses.replace(Config().ensemble,
                                                                         detectors=("ewma", "repeats")))
    history = simulate(2000, seed=4)
    ensemble, _ = train(history.timestamps, history.values, config)
    assert list(ensemble.alone_columns) == [1] and list(ensemble.combined_columns) == [0]
    p = np.array([[1e-3, 1.0], [0.5, 1e-9]])
    expected = analytic_p_value(combine(p[:, :1]), "cauchy", 1) if ensemble.combined_.size < 1000 else \
        ensemble.combined_.p_value(combine(p[:, :1]))
    np.testing.assert_allclose(ensemble.combined_p_value(p)[0], expected[0])  # p = 1 dilutes nothing
    assert ensemble.combined_p_value(p)[1] <= 1e-9  # the stuck evidence alone decides
    stream = simulate(600, seed=5, start_index=2000)
    values = stream.values.copy()
    values[300:330] = values[299]
    decisions = ensemble.decide(ensemble.scaler.transform(values), ensemble.grid.positions(stream.timestamps))
    stuck = np.zeros(len(values), dtype=bool)
    stuck[ensemble.window - 1:] = decisions.p_detectors[:, 1] < ensemble.alpha
    assert stuck[300:305].any() and stuck[305:330].all() and not stuck[330:].any()  # from the 3rd equal value on
