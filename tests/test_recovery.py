"""Recovery from sudden level shifts: false alarms by distance from the shift, and anomalies after it."""

from __future__ import annotations

from anomaly.config import AdaptConfig
from anomaly.evaluation.recovery import Recovery, drift_recovery


def test_the_recovery_bound_is_where_the_rate_stays_within_twice_the_target():
    buckets = [(0, 25), (25, 50), (50, 100), (100, 200)]
    recovery = Recovery(0.01, 4, buckets, [100, 100, 100, 0], [40, 1, 3, 0], 10, 9, 0.01)
    assert recovery.rates[:3] == [0.4, 0.01, 0.03]
    assert recovery.recovered_after == 100  # 3% at 50-100 is over 2%; the empty bucket counts as within
    assert recovery.recall == 0.9
    assert Recovery(0.01, 1, buckets, [100] * 4, [0, 0, 0, 5], 0, 0, 0.0).recovered_after is None


def test_the_measurement_sees_each_shift_and_the_anomalies_after_it(quick_ensemble):
    """On the trained ensemble as it is: shape detectors see a shift only while a window straddles it."""
    recovery = drift_recovery(quick_ensemble, 120_000, seed=11, start_index=20_000)
    assert recovery.shifts >= 10 and recovery.events >= 50
    assert recovery.rates[0] > 20 * quick_ensemble.alpha  # the shift itself looks like an anomaly at first
    assert recovery.recovered_after is not None and recovery.recovered_after <= 500, recovery.format()
    assert recovery.recall >= 0.9, recovery.format()


def test_recalibration_does_not_learn_the_anomalies_and_go_blind(quick_ensemble):
    """The simulator's anomalies are 5% of points, fifty times the target rate: any that leak into
    recalibration raise the thresholds, so that the next ones look less anomalous and leak too."""
    recovery = drift_recovery(quick_ensemble, 80_000, seed=11, start_index=20_000, adapt=AdaptConfig(refit=False))
    assert recovery.recall >= 0.9, recovery.format()
    assert recovery.overall_far <= 3 * quick_ensemble.alpha, recovery.format()  # not bought with false alarms
