"""The contract every registered detector keeps (DESIGN.md section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.model.detectors import REGISTRY, NotFittedError
from anomaly.model.detectors.base import score_consecutive
from anomaly.model.windows import sliding

PERIOD = 24
TINY = {
    "dense_ae": {"window": 16, "hidden": 8, "bottleneck": 3, "epochs": 3},
    "lstm_ae": {"window": 16, "units": 6, "epochs": 2},
    "iforest": {"window": 16, "n_estimators": 40, "max_samples": 128},
    "shesd": {"window": 48},
    "ocsvm": {"window": 16, "n_components": 50},
    "kmeans": {"window": 16, "n_clusters": 8},
    "zscore": {"window": 16},
    "ewma": {"window": 16},
    "holt_winters": {"window": 16},
    "adwin": {"window": 16},
    "repeats": {"window": 16},
}


def make(name: str, seed: int = 0):
    return REGISTRY[name](period=PERIOD, seed=seed, **TINY[name])


def normal_series(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / PERIOD) + 0.1 * rng.normal(size=n)


def windows_and_phase(values: np.ndarray, window: int):
    return sliding(values, window), np.arange(window - 1, len(values)) % PERIOD


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def fitted(request):
    name = request.param
    detector = make(name)
    windows, phase = windows_and_phase(normal_series(), detector.window)
    assert detector.fit(windows, phase) is detector  # fit returns self
    return name, detector


def test_every_detector_is_registered_under_its_name():
    assert set(REGISTRY) == {"dense_ae", "lstm_ae", "iforest", "shesd", "ocsvm", "kmeans", "zscore", "ewma", "holt_winters",
                             "adwin", "repeats"}
    assert all(cls.name == key for key, cls in REGISTRY.items())


def test_scores_have_one_finite_value_per_window(fitted):
    _, detector = fitted
    windows, phase = windows_and_phase(normal_series(600, seed=1), detector.window)
    scores = detector.score(windows, phase)
    assert scores.shape == (len(windows),)
    assert np.isfinite(scores).all()


def test_scoring_does_not_mutate_input(fitted):
    _, detector = fitted
    windows, phase = windows_and_phase(normal_series(300, seed=2), detector.window)
    windows = windows.copy()
    before, phase_before = windows.copy(), phase.copy()
    detector.score(windows, phase)
    np.testing.assert_array_equal(windows, before)
    np.testing.assert_array_equal(phase, phase_before)


def test_injected_spike_outscores_normal_points(fitted):
    _, detector = fitted
    values = normal_series(800, seed=3)
    if getattr(detector, "finds", "") == "stuck":  # what it looks for: a value that stops changing
        values[690:701] = values[690]
    else:
        values[700] += 3.0  # 30 noise standard deviations
    windows, phase = windows_and_phase(values, detector.window)
    scores = detector.score(windows, phase)
    spike = 700 - (detector.window - 1)
    normal = np.r_[scores[:spike - 5], scores[spike + detector.window:]]
    # above the 99th percentile, not the maximum: a tree ensemble ranks anything beyond the
    # training range like the most extreme training point, and a few fresh normal windows
    # fall beyond it on some feature by chance
    assert scores[spike] > np.quantile(normal, 0.99)


def test_save_and_load_give_identical_scores(fitted, tmp_path):
    name, detector = fitted
    detector.save(tmp_path / name)
    loaded = REGISTRY[name].load(tmp_path / name)
    windows, phase = windows_and_phase(normal_series(400, seed=4), detector.window)
    np.testing.assert_array_equal(loaded.score(windows, phase), detector.score(windows, phase))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_same_seed_gives_same_scores(name):
    values = normal_series(900, seed=5)
    a, b = make(name, seed=7), make(name, seed=7)
    windows, phase = windows_and_phase(values, a.window)
    np.testing.assert_allclose(a.fit(windows, phase).score(windows, phase),
                               b.fit(windows, phase).score(windows, phase), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_score_before_fit_is_a_clear_error(name):
    detector = make(name)
    windows, phase = windows_and_phase(normal_series(100), detector.window)
    with pytest.raises(NotFittedError, match="call fit"):
        detector.score(windows, phase)


def test_bad_shapes_and_values_are_clear_errors(fitted):
    name, detector = fitted
    w = detector.window
    with pytest.raises(ValueError, match=rf"shape \(n, {w}\)"):
        detector.score(np.zeros((5, w + 1)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        detector.score(np.zeros(w), None)
    bad = np.zeros((3, w))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detector.score(bad, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="phase"):
        detector.score(np.zeros((3, w)), np.array([0, 1, PERIOD]))


def test_consecutive_series_path_equals_scoring_the_sliding_windows(fitted):
    name, detector = fitted
    values = normal_series(500, seed=6)
    values[300] += 2.0
    phase = np.arange(len(values)) % PERIOD
    windows, last_phase = windows_and_phase(values, detector.window)
    fast = score_consecutive(detector, values, phase)
    np.testing.assert_array_equal(fast, detector.score(windows, last_phase))
    if name == "shesd":
        stats = detector.series_stats(values, phase)
        center, spread = detector.expected(windows, last_phase)
        np.testing.assert_array_equal(stats.center, center)
        np.testing.assert_array_equal(stats.spread, spread)
    if name == "iforest":
        np.testing.assert_array_equal(detector.features_series(values, phase), detector.features(windows, last_phase))


def test_across_a_gap_s_h_esd_deseasons_each_point_at_its_own_phase():
    """The stream passes every point's grid phase; after a gap those are not the last phase minus lags."""
    detector = make("shesd")
    detector.fit(*windows_and_phase(normal_series(), detector.window))
    values = normal_series(300, seed=9)
    phase = np.r_[np.arange(150), np.arange(150) + 150 + 7] % PERIOD  # 7 grid points missing
    stats = detector.series_stats(values, phase)
    deseasoned = sliding(values - detector.profile_[phase], detector.window)  # the numpy reference
    level = np.median(deseasoned, axis=1)
    spread = np.maximum(1.4826 * np.median(np.abs(deseasoned - level[:, None]), axis=1), detector.floor_)
    np.testing.assert_array_equal(stats.center, level + detector.profile_[phase[detector.window - 1:]])
    np.testing.assert_array_equal(stats.spread, spread)


def test_s_h_esd_flags_a_level_shift_where_it_happens_not_for_half_a_window_after():
    """The window median stays on the old level for half a window; the point's own deviation does not."""
    detector = make("shesd")
    detector.fit(*windows_and_phase(normal_series(), detector.window))
    values = normal_series(600, seed=11)
    values[400:] += 1.5  # 15 noise sd, for good
    scores = score_consecutive(detector, values, np.arange(len(values)) % PERIOD)
    first = detector.window - 1  # scores[j] belongs to point j + first
    assert scores[400 - first] > 1  # the generalised ESD calls the shift an anomaly where it happens
    assert scores[403 - first:424 - first].max() < 1  # and the new level normal two points later


def test_s_h_esd_takes_no_window_as_quieter_than_the_quietest_of_training():
    """After a stuck stretch the window's MAD is 0: ordinary points measured with it were hundreds of sd off."""
    rng = np.random.default_rng(0)
    detector = REGISTRY["shesd"](window=48, period=0)
    detector.fit(sliding(0.1 * rng.normal(size=1500), 48))
    values = 0.1 * rng.normal(size=400)
    values[200:260] = 0.0  # a sensor stuck for longer than the window
    scores = score_consecutive(detector, values, None)
    after = scores[260 - 47:300 - 47]  # the 40 ordinary points after it
    assert 0 < detector.floor_ < 0.1
    assert (after > 1).sum() <= 1


def test_an_s_h_esd_saved_before_its_spread_floor_is_refused(tmp_path):
    detector = make("shesd")
    detector.fit(*windows_and_phase(normal_series(), detector.window))
    detector.save(tmp_path)
    np.savez(tmp_path / "state.npz", profile=detector.profile_)  # as older versions wrote it
    with pytest.raises(ValueError, match="train new models"):
        REGISTRY["shesd"].load(tmp_path)


def test_a_forest_saved_without_its_compiled_trees_is_refused_not_unpickled(tmp_path):
    detector = make("iforest")
    detector.fit(*windows_and_phase(normal_series(), detector.window))
    detector.save(tmp_path)
    (tmp_path / "compiled.npz").unlink()  # as versions before the compiled forest wrote it
    with pytest.raises(ValueError, match="train new models"):
        REGISTRY["iforest"].load(tmp_path)
