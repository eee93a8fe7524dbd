"""The fast scoring paths give the numbers of the plain library computations they replace."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats
from sklearn.ensemble import IsolationForest

from anomaly.model.calibration import Calibrator
from anomaly.model.detectors import REGISTRY
from anomaly.model.detectors.forest import CompiledForest
from anomaly.model.detectors.onnx_export import session, to_onnx
from anomaly.model.rolling import rolling_exceedances, rolling_median, rolling_median_mad, row_medians


def series(kind: int, n: int, rng) -> np.ndarray:
    """Continuous, heavily tied (integer) and rounded series: ties are where order statistics break."""
    if kind == 0:
        return rng.normal(size=n)
    if kind == 1:
        return rng.integers(0, 4, size=n).astype(float)
    return np.round(rng.normal(size=n), 1)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_rolling_statistics_equal_numpy_on_every_window(kind):
    rng = np.random.default_rng(kind)
    for _ in range(60):
        n = int(rng.integers(1, 300))
        size = int(rng.integers(1, n + 1))
        x = series(kind, n, rng)
        windows = sliding_window_view(x, size)
        median, mad = rolling_median_mad(x, size)
        np.testing.assert_array_equal(median, np.median(windows, axis=1))
        np.testing.assert_array_equal(mad, np.median(np.abs(windows - median[:, None]), axis=1))
        np.testing.assert_array_equal(rolling_median(x, size), median)
        np.testing.assert_array_equal(row_medians(windows), median)
        scale = np.maximum(1.4826 * mad, 1e-3)
        z = (windows - median[:, None]) / scale[:, None]
        for direction, signed in (("both", np.abs(z)), ("pos", z), ("neg", -z)):
            expected = (signed[:, :-1] > signed[:, -1:]).sum(axis=1)
            np.testing.assert_array_equal(rolling_exceedances(x, size, median, scale, direction), expected)


def test_rolling_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="at least size=5"):
        rolling_median(np.arange(3.0), 5)
    with pytest.raises(ValueError, match="1-D"):
        rolling_median_mad(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="shape"):
        rolling_exceedances(np.arange(10.0), 4, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        row_medians(np.arange(3.0))
    rows = np.array([[1.0, np.nan, 2.0], [3.0, 1.0, 2.0]])  # a NaN makes its row's median NaN, as numpy's
    np.testing.assert_array_equal(row_medians(rows), np.median(rows, axis=1))


@pytest.mark.parametrize("max_samples,max_features,n_estimators", [(512, 1.0, 100), (64, 0.6, 30), (2, 1.0, 5)])
def test_compiled_forest_scores_equal_scikit_learn_bit_for_bit(max_samples, max_features, n_estimators):
    rng = np.random.default_rng(max_samples)
    train = rng.normal(size=(3000, 5))
    train[:, 0] = np.round(train[:, 0], 1)  # ties: thresholds then fall between equal-looking float32 values
    forest = IsolationForest(n_estimators=n_estimators, max_samples=max_samples,
                             max_features=max_features, random_state=1).fit(train)
    rows = np.r_[2 * rng.normal(size=(4000, 5)), train[:500]]
    np.testing.assert_array_equal(CompiledForest(forest).score(rows), -forest.score_samples(rows))


def test_compiled_forest_refuses_too_deep_trees_and_wrong_shapes():
    rng = np.random.default_rng(0)
    forest = IsolationForest(n_estimators=3, max_samples=64, random_state=0).fit(rng.normal(size=(200, 3)))
    compiled = CompiledForest(forest)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        compiled.score(np.zeros((2, 4)))
    deep = IsolationForest(n_estimators=1, max_samples=20_000, random_state=0).fit(rng.normal(size=(20_000, 2)))
    with pytest.raises(ValueError, match="max_samples"):
        CompiledForest(deep)


@pytest.fixture(scope="module")
def fitted_autoencoders():
    rng = np.random.default_rng(0)
    t = np.arange(1200)
    values = np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=len(t))
    windows = sliding_window_view(values, 16)
    return {name: REGISTRY[name](window=16, seed=0, epochs=2, **params).fit(windows)
            for name, params in (("dense_ae", {"hidden": 8, "bottleneck": 3}), ("lstm_ae", {"units": 6}))}


@pytest.mark.parametrize("name", ["dense_ae", "lstm_ae"])
def test_onnx_graph_reproduces_the_keras_model(fitted_autoencoders, name):
    detector = fitted_autoencoders[name]
    x = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    keras_input = x[:, :, None] if name == "lstm_ae" else x
    expected = np.asarray(detector.model_(keras_input, training=False)).reshape(300, 16)
    runtime = session(to_onnx(detector.model_, 16))
    batch = runtime.run(None, {"windows": x})[0]
    np.testing.assert_allclose(batch, expected, atol=1e-5)
    # the same window gives the same numbers alone as in a batch: live and replay agree
    one_by_one = np.concatenate([runtime.run(None, {"windows": x[i:i + 1]})[0] for i in range(20)])
    np.testing.assert_array_equal(one_by_one, batch[:20])


def test_onnx_export_refuses_layers_it_does_not_know():
    from anomaly.model.detectors.autoencoder import keras

    k = keras()
    model = k.Sequential([k.Input((8,)), k.layers.Dense(4, activation="softplus"), k.layers.Dense(8)])
    with pytest.raises(NotImplementedError, match="softplus"):
        to_onnx(model, 8)
    model = k.Sequential([k.Input((8, 1)), k.layers.GRU(4)])
    with pytest.raises(NotImplementedError, match="GRU"):
        to_onnx(model, 8)


def test_calibrated_tail_equals_scipy_generalised_pareto():
    rng = np.random.default_rng(3)
    calibrator = Calibrator().fit(rng.gamma(2.0, size=4000))
    scores = np.linspace(calibrator.threshold_, calibrator.threshold_ + 20, 200)[1:]
    n = len(calibrator.sorted_)
    k = n - np.searchsorted(calibrator.sorted_, calibrator.threshold_, side="right")
    shape, scale = calibrator.gpd_
    expected = np.clip(k / (n + 1.0) * stats.genpareto.sf(scores - calibrator.threshold_, shape, scale=scale),
                       1e-12, 1.0)
    np.testing.assert_array_equal(calibrator.p_value(scores), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_p_values_equal_the_numpy_form_many_series_use(seed):
    """Calibrator.p_value (compiled, one calibrator) against tail_p_values (numpy, a tick's table of many)."""
    from anomaly.model.calibration import _search_left, tail_p_values

    rng = np.random.default_rng(seed)
    sample = np.r_[np.round(rng.gamma(2.0, size=3000), 1), np.full(500, 12.0)]  # ties, and a tied top
    whole = Calibrator(cautious=bool(seed)).fit(sample)
    scores = np.r_[rng.choice(sample, 300), rng.uniform(-1.0, 40.0, 700), whole.threshold_, [np.nan, np.inf, -np.inf]]
    for calibrator in (whole, whole.thinned(200)):
        n = calibrator.size
        if calibrator.size_:
            m = len(calibrator.sorted_)
            at_least = n - _search_left(calibrator.sorted_, np.zeros(len(scores), dtype=np.int64),
                                        np.full(len(scores), m), np.full(len(scores), n), scores)
        else:
            at_least = n - np.searchsorted(calibrator.sorted_, scores, side="left")
        expected = tail_p_values(scores, n, at_least, calibrator.threshold_, lambda: calibrator.tail_share,
                                 *calibrator.gpd_)
        assert (expected < 1e-3).sum() > 50  # the fitted tail is reached
        np.testing.assert_array_equal(calibrator.p_value(scores), expected)


def test_decisions_are_those_of_the_keras_models_on_a_test_stream(quick_ensemble, quick_run):
    """ONNX Runtime rounds floats differently from Keras (~1e-6): not one decision may change."""
    from anomaly.model.calibration import anomaly_score, combine
    from anomaly.model.detectors.autoencoder import NAIVE, keras, masked
    from anomaly.model.windows import sliding
    from anomaly.simulate import simulate

    ensemble = quick_ensemble
    series = simulate(6000, seed=31, anomalies=True, start_index=25_000)
    scaled = ensemble.scaler.transform(series.values)
    positions = ensemble.grid.positions(series.timestamps)
    fast = ensemble.decide(scaled, positions)
    raw = ensemble.raw_scores(scaled, positions)
    for column, name in enumerate(ensemble.names):
        detector = ensemble.detectors[name]
        if not hasattr(detector, "graph_"):
            continue
        model = keras().models.load_model(quick_run / "detectors" / name / "model.keras", compile=False)
        windows = sliding(scaled, detector.window)[ensemble.window - detector.window:]
        inputs, last = masked(windows, detector.spread_)
        inputs = inputs[:, :, None] if name == "lstm_ae" else inputs
        forecast = np.asarray(model(inputs.astype(np.float32), training=False)).reshape(windows.shape)[:, -1]
        naive = np.median(windows[:, -NAIVE - 1:-1], axis=1)
        keras_scores = np.minimum(np.abs(last - forecast), np.abs(windows[:, -1] - naive))
        np.testing.assert_allclose(raw[:, column], keras_scores, rtol=1e-4, atol=1e-6)
        raw[:, column] = keras_scores
    p_value = ensemble.combined_.p_value(combine(ensemble.detector_p_values(raw), ensemble.combine))
    reference = p_value < ensemble.alpha
    assert reference.sum() > 20  # the stream has anomalies to decide on
    np.testing.assert_array_equal(fast.is_anomaly, reference)
    np.testing.assert_allclose(fast.score, anomaly_score(p_value, ensemble.alpha), atol=0.01)


def test_compiled_holt_recursion_equals_the_numpy_recursion_bit_for_bit():
    from anomaly.model.detectors.statistical import _holt_forecasts

    rng = np.random.default_rng(0)
    for _ in range(100):
        n, width = int(rng.integers(1, 40)), int(rng.integers(3, 64))
        deseasoned = rng.normal(0, rng.uniform(0.1, 100), (n, width))
        alpha, beta = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
        level, trend = deseasoned[:, 0].copy(), np.zeros(n)
        for k in range(1, width - 1):  # what the detector ran as numpy operations, a row each
            previous = level
            level = alpha * deseasoned[:, k] + (1 - alpha) * (level + trend)
            trend = beta * (level - previous) + (1 - beta) * trend
        np.testing.assert_array_equal(_holt_forecasts(deseasoned, alpha, beta), level + trend)
