"""The simulator's families of metrics: each one reproducible, labelled, and shaped like the metric it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.config import SimulatorConfig
from anomaly.families import FAMILIES, family_kinds
from anomaly.simulate import Simulator, simulate


def family(name: str) -> SimulatorConfig:
    return SimulatorConfig(family=name)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_is_the_same_stream_whatever_the_block_sizes(name):
    whole = simulate(6000, seed=3, anomalies=True, config=family(name))
    sim = Simulator(family(name), seed=3, anomalies=True)
    parts = [sim.generate(k) for k in (2500, 1, 1499, 2000)]
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]), whole.values)
    np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), whole.labels)
    assert not np.array_equal(simulate(6000, seed=4, config=family(name)).values,
                              simulate(6000, seed=3, config=family(name)).values)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_injects_its_own_kinds_and_labels_them(name):
    series = simulate(20_000, seed=2, anomalies=True, config=family(name))
    assert {e.kind for e in series.events} == set(family_kinds(name))
    expected = np.zeros(len(series.values), dtype=bool)
    for event in series.events:
        expected[event.start:event.end] = True
        assert set(series.kinds[event.start:min(event.end, len(expected))]) == {event.kind}
    np.testing.assert_array_equal(series.labels, expected)
    assert np.isfinite(series.values).all()
    assert not simulate(20_000, seed=2, config=family(name)).labels.any()  # without anomalies: all normal


def test_bursty_has_a_quiet_baseline_and_bursts_that_recur():
    values = simulate(20_000, seed=1, config=family("bursty")).values
    baseline = np.median(values)
    bursting = values > 20 * baseline
    assert 0.03 < bursting.mean() < 0.3  # bursts are a recurring minority of the points
    starts = np.flatnonzero(bursting[1:] & ~bursting[:-1])
    assert len(starts) > 100 and np.diff(starts).max() < 300  # all along the stream, never long absent
    heights = values[bursting]
    assert np.quantile(heights, 0.95) / np.quantile(heights, 0.05) > 3  # of heavy-tailed heights


def test_bursty_anomalies_are_far_beyond_or_away_from_its_bursts():
    series = simulate(40_000, seed=5, anomalies=True, config=family("bursty"))
    clean = simulate(40_000, seed=5, config=family("bursty"))  # the same draws without the anomalies
    normal_peak = np.quantile(series.values[~series.labels], 0.999)
    for event in series.events:
        part = slice(event.start, event.end)
        if event.kind == "giant_burst":
            assert series.values[part].max() > 3 * normal_peak
        elif event.kind == "silence":  # the three jobs' bursts do not come, and only those
            missing = clean.values[part] - series.values[part]
            assert (missing > 20 * np.median(clean.values)).sum() == 3 * 2 and missing.min() >= 0
        elif event.kind == "flatline":
            assert np.ptp(series.values[part]) == 0


def test_counts_are_small_whole_numbers_with_many_zeros_and_a_daily_rate():
    config = family("counts")
    values = simulate(14 * config.period, seed=1, config=config).values
    assert np.array_equal(values, np.round(values)) and values.min() >= 0
    assert 0.1 < (values == 0).mean() < 0.6
    by_phase = values.reshape(14, config.period).mean(axis=0)
    assert by_phase.max() > 3 * by_phase.min()  # the rate follows the day


def test_heavytail_is_positive_with_a_long_right_tail():
    values = simulate(20_000, seed=1, config=family("heavytail")).values
    assert values.min() > 0
    q50, q99, top = np.quantile(values, [0.5, 0.99, 0.9999])
    assert q99 / q50 > 3 and top / q50 > 8


def test_steps_hold_a_whole_number_and_move_by_their_usual_steps():
    series = simulate(20_000, seed=1, anomalies=True, config=family("steps"))
    normal = ~series.labels[1:] & ~series.labels[:-1]
    steps = np.diff(series.values)[normal]
    assert np.array_equal(series.values, np.round(series.values))
    assert (steps != 0).mean() < 0.06
    assert set(np.abs(steps[steps != 0]).tolist()) <= {1.0, 2.0}
    big = [e for e in series.events if e.kind == "big_step"]
    assert big and all(np.abs(series.values[e.start] - series.values[e.start - 1]) >= 5 for e in big)


def test_bounded_stays_within_0_and_100_and_sits_at_100_at_peak():
    series = simulate(20_000, seed=1, anomalies=True, config=family("bounded"))
    assert series.values.min() >= 0 and series.values.max() <= 100
    assert 0.05 < (series.values[~series.labels] == 100).mean() < 0.4
    for event in series.events:
        if event.kind in ("flatline", "pinned"):  # where the metric is not at 100 anyway
            assert series.values[event.start - 1] < 100 or event.kind == "pinned"


def test_an_unknown_family_and_drift_outside_the_smooth_one_are_clear_errors():
    with pytest.raises(ValueError, match="unknown simulator family 'spiky'"):
        Simulator(SimulatorConfig(family="spiky"))
    with pytest.raises(ValueError, match="smooth family only"):
        Simulator(family("counts"), drift=True)


def test_evaluate_families_prints_recall_per_kind_and_flags_by_distance_over_the_target(capsys, tmp_path):
    from anomaly.evaluate import main

    out = tmp_path / "runs.json"
    assert main(["families", "--families", "counts", "--seeds", "1", "--heads", "400", "--points", "2500",
                 "--quick", "--no-refit", "--workers", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in lines if line.startswith("family"))
    assert header[:4] == ["family", "head", "seeds", "recall"] and header[4:9] == ["1-9", "10-32", "33-99", "100+", "10+"]
    row = next(line.split() for line in lines if line.startswith("counts"))
    assert row[1:3] == ["400", "1"] and 0 <= float(row[3]) <= 1
    assert all(f"{kind} " in " ".join(row) for kind in family_kinds("counts"))  # found/of per kind
    import json

    runs = json.loads(out.read_text())
    assert len(runs) == 1 and runs[0]["family"] == "counts" and sum(runs[0]["events"].values()) >= 3
    assert main(["families", "--families", "spiky"]) == 2  # a clear error, not a traceback


def test_train_and_stream_simulate_the_family_asked_for(tmp_path):
    from anomaly.cli import stream_main, train_main

    models = tmp_path / "models"
    assert train_main(["--quick", "--family", "steps", "--models", str(models), "--quiet"]) == 0
    import json

    manifest = json.loads(next(models.glob("run-*/manifest.json")).read_text())
    assert manifest["config"]["simulator"]["family"] == "steps"
    records = tmp_path / "out.jsonl"
    assert stream_main(["--models", str(models), "--limit", "300", "--rate", "0", "--no-plot", "--quiet",
                        "--output", str(records), "--log", str(tmp_path / "a.log")]) == 0
    values = [json.loads(line)["value"] for line in records.read_text().splitlines()]
    assert len(values) == 300 and all(float(v).is_integer() for v in values)  # the run's family went on: steps
