"""Calibration: p-values mean what they say, and the ensemble keeps its false-alarm promise."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import score_series

from anomaly.model.calibration import Calibrator, CalibratorTable, anomaly_score, combine
from anomaly.simulate import simulate


def test_p_values_of_fresh_draws_are_uniform():
    rng = np.random.default_rng(0)
    cal = Calibrator().fit(rng.normal(size=5000))
    p = cal.p_value(rng.normal(size=50_000))
    for level in (0.5, 0.1, 0.01):  # inside the sample: counting, nearly exact
        assert 0.8 * level < np.mean(p < level) < 1.25 * level
    # in the fitted tail the Gaussian's light tail is modelled as exponential (shape >= 0), made a
    # little heavier still for the uncertainty of its shape: deliberately conservative, so fewer alarms
    # than promised rather than more (measured: 0.4x here)
    assert 0.3 * 0.001 < np.mean(p < 0.001) < 1.5 * 0.001


def test_a_small_heavy_tailed_sample_rarely_breaks_the_promise():
    """Real metrics have heavy tails and short histories. From 100 points the tail's shape is a guess; taken
    at face value, one calibration in ten flagged 6.8x the target on Student-t(3) scores; erring heavier
    by the shape's uncertainty (1/sqrt(k)), at most 2.5x."""
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(30):
        calibrator = Calibrator().fit(np.abs(rng.standard_t(3, size=100)))
        p = calibrator.p_value(np.abs(rng.standard_t(3, size=100_000)))
        ratios.append(np.mean(p < 1e-3) / 1e-3)
    assert np.percentile(ratios, 90) <= 2.5, sorted(ratios)
    assert np.mean(ratios) >= 0.2  # still alarms: not blind


def test_tail_beyond_the_sample_keeps_falling():
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=2000)
    cal = Calibrator().fit(scores)
    p = cal.p_value(np.array([scores.max(), scores.max() + 2, scores.max() + 6]))
    assert p[0] > p[1] > p[2] > 0
    assert p[1] < 1 / 2001  # beyond the sample, below what counting could say
    # the true exponential tail, erring heavier (fewer alarms) by the shape's uncertainty: 1/sqrt(100) here
    true = np.exp(-(scores.max() + 6))
    assert true < p[2] < 100 * true


def test_p_values_fall_as_scores_rise():
    cal = Calibrator().fit(np.random.default_rng(2).gamma(2.0, size=1000))
    p = cal.p_value(np.linspace(-1, 30, 500))
    assert np.all(np.diff(p) <= 0)
    assert p[0] == 1.0


def test_calibrator_rejects_bad_samples():
    with pytest.raises(ValueError, match="at least 10"):
        Calibrator().fit(np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        Calibrator().fit(np.r_[np.ones(30), np.nan])


def test_cauchy_combination_is_driven_by_the_smallest_p_value():
    p = np.array([[0.5, 0.5, 0.5], [1e-6, 0.5, 0.5], [1e-3, 1e-3, 1e-3]])
    stat = combine(p, "cauchy")
    assert stat[1] > stat[2] > stat[0]
    assert np.isclose(combine(p, "bonferroni")[1], -np.log10(3e-6))
    with pytest.raises(ValueError, match="cauchy"):
        combine(p, "fisher")


def test_anomaly_score_is_half_at_the_threshold_and_monotone():
    p = np.array([1.0, 0.1, 1e-3, 1e-6, 1e-12])
    s = anomaly_score(p, 1e-3)
    assert s[0] == 0 and np.isclose(s[2], 0.5)
    assert np.all(np.diff(s) > 0) and np.all(s < 1)


@pytest.fixture(scope="module")
def fresh_normal_p(quick_ensemble, quick_run):
    """Final p-values on 100,000 fresh normal points (a different seed), after training ends."""
    import json
    start = json.loads((quick_run / "manifest.json").read_text())["points"]
    series = simulate(100_000, seed=123, start_index=start)
    p, _, first = score_series(quick_ensemble, series)
    return p[first:]


@pytest.mark.parametrize("target", [1e-2, 1e-3])
def test_false_alarm_rate_on_fresh_normal_data_matches_the_target(fresh_normal_p, target):
    observed = np.mean(fresh_normal_p < target)
    assert 0.5 * target <= observed <= 2 * target, f"observed {observed:.2g} for target {target:g}"


def test_manifest_records_target_and_measured_rate(quick_run):
    import json
    manifest = json.loads((quick_run / "manifest.json").read_text())
    assert manifest["target_far"] == 1e-3
    assert 0 <= manifest["measured_far"] <= 5e-3
    assert manifest["parts"]["validation"] > 1000
    assert {"tensorflow", "keras", "scikit-learn", "statsmodels", "numpy"} <= set(manifest["versions"])


def test_a_quantised_sample_does_not_make_rounding_differences_alarms():
    """Noise-free data gives a handful of distinct scores: a tail that cannot be fitted must still
    have a width, or a difference of 1e-9 is a p = 1e-12 alarm (hundreds per noise-free NAB file)."""
    sample = np.r_[np.zeros(80), np.full(10, 0.5), [1.349]]
    calibrator = Calibrator().fit(sample)
    p = calibrator.p_value(np.array([1.349 + 1e-9, 1.349 * 1.5, 1.349 * 20]))
    assert p[0] > 0.005
    assert p[1] > 1e-3
    assert p[2] < 1e-4  # far beyond everything normal: still an anomaly, ten times past the default threshold


def test_a_constant_sample_flags_any_real_change():
    calibrator = Calibrator().fit(np.zeros(100))
    p = calibrator.p_value(np.array([1e-12, 0.01]))
    assert p[0] > 0.005 and p[1] < 1e-6


def test_one_detector_that_sees_nothing_does_not_outvote_the_others():
    """p = 1 from one detector (a score below its whole calibration sample) must not cancel three at 1e-12."""
    p = np.array([[1e-12, 1e-12, 1e-12, 1.0], [0.99, 0.99, 0.99, 0.99]])
    statistic = combine(p, "cauchy")
    assert statistic[0] > 1e10 and statistic[1] > -40


def test_a_thinned_calibrator_keeps_the_tail_and_the_bulk_within_two_percent_in_a_few_hundred_scores():
    """A recalibrated calibrator keeps 256 order statistics of its sample (memory of many series): beyond the
    threshold the same p-values, below it within 2% of the whole sample's (interpolated, exact at the order
    statistics kept), tied scores too; it saves and loads as it is."""
    rng = np.random.default_rng(4)
    tied = np.r_[np.zeros(2000), rng.normal(size=1000)]
    for sample in (rng.gamma(2.0, size=3000), rng.lognormal(0.0, 1.5, 6000), tied):
        whole = Calibrator().fit(sample)
        thin = whole.thinned(256)
        assert len(thin.sorted_) == 256 and thin.size == len(sample)
        scores = np.r_[np.quantile(sample, np.linspace(0, 1, 500)), whole.threshold_ + np.linspace(0, 10, 50),
                       sample.min() - 1.0]
        expected, got = whole.p_value(scores), thin.p_value(scores)
        tail = scores > whole.threshold_
        np.testing.assert_array_equal(got[tail], expected[tail])
        assert np.max(np.abs(got - expected) / expected) < 0.02
        np.testing.assert_array_equal(Calibrator.from_arrays(thin.to_arrays()).p_value(scores), got)
    assert whole.thinned(len(sample)) is whole  # nothing to thin


def test_a_calibrator_table_decides_as_each_calibrator_and_holds_each_sample_once():
    """Many series' calibrators side by side (a tick of many series): the same p-values as each calibrator's own,
    through growth, removals and compaction, with each sample held once (the calibrator reads the table's copy)
    and little room beyond the live samples."""
    rng = np.random.default_rng(3)
    table, live, most = CalibratorTable(), {}, 0
    for round_ in range(6):
        for _ in range(40):  # more samples than the table's first room: it grows
            calibrator = Calibrator().fit(rng.gamma(2.0, rng.uniform(0.5, 3.0), rng.integers(50, 900)))
            if rng.random() < 0.5:  # a recalibrated one: its sample thinned (interpolated below the tail)
                calibrator = calibrator.thinned(int(rng.integers(20, 200)))
            expected = calibrator.sorted_.copy()
            live[table.add(calibrator)] = calibrator, expected
            # the room of calibrators gone is taken back as it comes to an eighth of the live samples, and the
            # table grows by an eighth: it holds at most about a quarter more than the most samples live at once
            most = max(most, sum(len(kept) for _, kept in live.values()))
            assert len(table._data) <= 1.3 * most + 1024
        for slot in list(live)[::2]:  # half of them go: their room is taken back at a later add
            table.remove(slot)
            del live[slot]
        slots = np.array(list(live))
        scores = rng.gamma(2.0, 3.0, len(slots)) * rng.choice([1.0, 5.0], len(slots))
        own = np.array([live[slot][0].p_value(np.array([score]))[0] for slot, score in zip(slots, scores)])
        np.testing.assert_array_equal(table.p_value(slots, scores), own)
    for calibrator, expected in live.values():
        np.testing.assert_array_equal(calibrator.sorted_, expected)  # its sample, unchanged
        assert np.shares_memory(calibrator.sorted_, table._data) and not calibrator.sorted_.flags.writeable
    assert table._used <= 2 * sum(len(expected) for _, expected in live.values()) + 1024
