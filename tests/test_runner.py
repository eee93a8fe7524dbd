"""The online runner: causal, block scoring equals one-by-one, bad points rejected; runs persist."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.model.runs import latest_run, load_run, write_run
from anomaly.online.runner import Rejected, Runner
from anomaly.simulate import Point, simulate


@pytest.fixture(scope="module")
def points(quick_config):
    series = simulate(700, seed=21, anomalies=True, start_index=20_000)
    return [Point(t, v, bool(y), k) for t, v, y, k in
            zip(series.timestamps, series.values, series.labels, series.kinds)]


def test_blocks_and_single_points_give_the_same_decisions(quick_ensemble, points):
    one = Runner(quick_ensemble)
    singles = [one.step(p) for p in points]
    blocks = Runner(quick_ensemble)
    batched = [d for i in range(0, len(points), 97) for d in blocks.step_many(points[i:i + 97])]
    assert [d.status for d in singles] == [d.status for d in batched]
    np.testing.assert_allclose([d.p_value for d in singles], [d.p_value for d in batched], rtol=1e-5)


def test_a_decision_never_depends_on_later_points(quick_ensemble, points):
    base = [d.p_value for d in Runner(quick_ensemble).step_many(points)]
    changed = list(points)
    changed[500:] = [Point(p.timestamp, p.value + 50.0) for p in points[500:]]
    other = [d.p_value for d in Runner(quick_ensemble).step_many(changed)]
    np.testing.assert_allclose(base[:500], other[:500], rtol=1e-5)
    assert not np.allclose(base[500:], other[500:])


def test_warm_up_until_the_longest_window_is_full(quick_ensemble, points):
    decisions = Runner(quick_ensemble).step_many(points[:300])
    warm = quick_ensemble.window - 1
    assert all(d.status == "warm-up" and not d.is_anomaly for d in decisions[:warm])
    assert all(d.status == "ok" for d in decisions[warm:])
    assert all(set(d.p_detectors) == set(quick_ensemble.names) for d in decisions)


def test_bad_points_are_rejected_with_a_reason(quick_ensemble):
    runner = Runner(quick_ensemble)
    assert runner.check(Point(1000.0, 1.0), 1) is None
    cases = [(Point(2000.0, math.nan), "non-finite value"), (Point(1000.0, 2.0), "duplicate timestamp"),
             (Point(500.0, 2.0), "out of order"), (Point(math.inf, 2.0), "non-finite timestamp")]
    for position, (point, reason) in enumerate(cases, start=2):
        rejected = runner.check(point, position)
        assert isinstance(rejected, Rejected) and reason in rejected.reason
        runner.reject(rejected)
    assert runner.counts.rejected == 4


def test_saved_run_gives_identical_decisions(quick_run, quick_ensemble, points, tmp_path):
    reloaded, manifest = load_run(quick_run)
    again, _ = load_run(write_run(tmp_path, reloaded, manifest))
    a = Runner(quick_ensemble).step_many(points)
    b = Runner(again).step_many(points)
    assert [d.p_value for d in a] == [d.p_value for d in b]
    assert [d.p_detectors for d in a] == [d.p_detectors for d in b]


def test_a_crash_while_saving_leaves_the_previous_run_in_place(quick_ensemble, tmp_path, monkeypatch):
    first = write_run(tmp_path, quick_ensemble, {"note": "first"})
    detector = quick_ensemble.detectors[quick_ensemble.names[-1]]

    def crash(directory):
        raise RuntimeError("disk full")

    monkeypatch.setattr(detector, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_run(tmp_path, quick_ensemble, {"note": "second"})
    assert latest_run(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".lock", "LATEST", first.name])
