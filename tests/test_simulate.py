"""The simulator: reproducible, resumable, labelled, and drift is not an anomaly."""

from __future__ import annotations

import numpy as np

from anomaly.simulate import ANOMALY_KINDS, Simulator, simulate


def test_same_seed_same_stream_whatever_the_block_sizes():
    whole = simulate(9000, seed=3, anomalies=True, drift=True)
    sim = Simulator(seed=3, anomalies=True, drift=True)
    parts = [sim.generate(k) for k in (4000, 1, 2999, 2000)]
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]), whole.values)
    assert not np.array_equal(simulate(9000, seed=4).values, simulate(9000, seed=3).values)


def test_labels_and_kinds_match_the_injected_events():
    series = simulate(20_000, seed=2, anomalies=True)
    assert {e.kind for e in series.events} == set(ANOMALY_KINDS)
    expected = np.zeros(len(series.values), dtype=bool)
    for event in series.events:
        expected[event.start:event.end] = True
        assert set(series.kinds[event.start:min(event.end, len(expected))]) == {event.kind}
    np.testing.assert_array_equal(series.labels, expected)
    assert set(series.kinds[~series.labels]) == {""}


def test_each_kind_changes_the_signal_the_way_it_says():
    series = simulate(30_000, seed=9, anomalies=True)
    clean = simulate(30_000, seed=9, anomalies=False)
    for event in series.events:
        part = slice(event.start, min(event.end, 30_000))
        delta = series.values[part] - clean.values[part]
        if event.kind == "flatline":
            assert np.ptp(series.values[part]) == 0  # stuck at one value
        elif event.kind in ("spike", "level_shift", "dip"):
            np.testing.assert_allclose(delta, event.magnitude)
        elif event.kind == "variance_burst":
            assert np.std(delta) > 2.0
        elif event.kind == "contextual":  # values from the opposite time of day
            assert np.abs(delta).max() > 5.0


def test_drift_changes_the_level_but_is_not_labelled():
    drifting = simulate(20_000, seed=4, drift=True)
    plain = simulate(20_000, seed=4)
    drifts = [e for e in drifting.events if "drift" in e.kind]
    assert drifts and not drifting.labels.any()
    assert np.abs(drifting.values[-100:] - plain.values[-100:]).mean() > 1.0


def test_points_carry_timestamps_labels_and_kinds():
    points = Simulator(seed=1, anomalies=True).points()
    first = [next(points) for _ in range(2000)]
    steps = np.diff([p.timestamp for p in first])
    assert np.all(steps == 600)
    assert any(p.label for p in first) and all(bool(p.kind) == p.label for p in first)
