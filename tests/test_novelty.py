"""Record evidence: a value beyond every value the stream has shown is anomalous, a trend the history showed is not."""

import copy

import numpy as np

from anomaly.io.records import Chunk
from anomaly.model.novelty import record_p_rows, record_p_values, record_range, record_step
from anomaly.online.runner import Runner


def test_step_is_the_typical_change_and_ties_fall_back_to_the_mean():
    assert record_step(np.arange(10.0) * 2) == 1.4826 * 2
    assert record_step(np.array([0, 0, 0, 0, 3.0])) == 0.75  # most changes 0: the mean change
    assert record_step(np.full(5, 7.0)) == 0.0


def test_a_far_new_extreme_is_a_record_and_the_same_extreme_again_is_not():
    rng = np.random.default_rng(0)
    history = rng.normal(0, 1, 5000)
    low, high, seen, step = record_range(history)
    values = np.array([0.0, high + 10 * step, high + 10 * step, low - 0.5 * step])
    p, low2, high2, seen2 = record_p_values(values, low, high, seen, step)
    assert p[0] == 1.0 and p[3] == 1.0  # inside the range, and beyond it by less than a step
    assert p[1] < 1e-6  # ten steps beyond 5,000 values: p = 2 / 5,002 * e^-10
    assert p[2] == 1.0  # seen now
    assert (low2, high2, seen2) == (min(low, values.min()), high + 10 * step, seen + 4)


def test_a_trend_moving_less_than_a_step_between_records_never_flags():
    t = np.arange(20_000.0)
    rng = np.random.default_rng(1)
    series = 0.001 * t + np.sin(2 * np.pi * t / 144) * 5 + rng.normal(0, 1, len(t))
    p, *_ = record_p_values(series[2000:], *record_range(series[:2000]))
    assert (p < 1e-3).sum() <= 2  # (the target rate would allow 18)


def test_rows_of_many_series_give_what_each_sequence_gives():
    rng = np.random.default_rng(2)
    histories = [rng.normal(0, s, 300) for s in (0.5, 1.0, 3.0)]
    ranges = [record_range(h) for h in histories]
    points = rng.normal(0, 4, (50, 3))
    expected = np.column_stack([record_p_values(points[:, j], *ranges[j])[0] for j in range(3)])
    low, high, seen, step = (np.array(column, dtype=float) for column in zip(*ranges))
    for i in range(len(points)):
        got = record_p_rows(points[i], low, high, seen, step)
        np.testing.assert_array_equal(got, expected[i])
        low, high, seen = np.minimum(low, points[i]), np.maximum(high, points[i]), seen + 1


def test_a_slow_climb_to_a_level_never_seen_is_flagged_by_the_stream(quick_ensemble):
    ensemble = quick_ensemble
    low, high, seen, step = ensemble.range_
    assert seen > 0 and step > 0 and low < high
    grid = ensemble.grid
    n = 3000
    timestamps = grid.timestamp(np.arange(n) + 10**6)
    # a noisy climb from the middle of the range to far beyond it, a twentieth of a step a point: the detectors'
    # windows expect each point from the ones before it, while the points that overshoot every earlier value by
    # more than a step are new extremes
    values = (low + high) / 2 + 0.05 * step * np.arange(n) + np.random.default_rng(3).normal(0, step, n)
    block, _ = Runner(ensemble).process(Chunk(timestamps, values, np.arange(n) + 1))
    # without the range (a run saved before record evidence)
    blind = copy.copy(ensemble)
    blind.range_ = None
    plain, _ = Runner(blind).process(Chunk(timestamps, values, np.arange(n) + 1))
    assert (block.p_value <= plain.p_value).all()
    beyond = ~block.warmup & (values > high + step)
    assert block.is_anomaly[beyond].sum() >= plain.is_anomaly[beyond].sum() + 10
    inside = ~block.warmup & (values < high)
    np.testing.assert_array_equal(block.is_anomaly[inside], plain.is_anomaly[inside])  # no record inside the range
    # the block says which p-values are records', and an incident of records names the range as its evidence
    assert block.record is not None and not block.record[inside].any()
    assert (block.is_anomaly & ~plain.is_anomaly <= block.record).all()
    from anomaly.io.alarms import RANGE, AlarmFilter

    events = AlarmFilter(cooldown=5).update(block)
    opened = [event.incident for event in events if event.kind == "opened"]
    assert any(RANGE in incident.detectors for incident in opened)
    from anomaly.io.alerts import describe

    assert any("beyond every value seen (p=" in describe(event) for event in events if RANGE in event.incident.detectors)


def test_ticks_of_many_series_flag_the_records_each_series_own_runner_flags(quick_ensemble, quick_config):
    import dataclasses

    from anomaly.online.keyed import KeyedRunners, in_input_order

    ensemble = quick_ensemble
    low, high, _, step = ensemble.range_
    grid, n = ensemble.grid, 1500
    timestamps = grid.timestamp(np.arange(n) + 10**6)
    rng = np.random.default_rng(4)
    series = {key: (low + high) / 2 + climb * step * np.arange(n) + rng.normal(0, step, n)
              for key, climb in (("up", 0.08), ("flat", 0.0), ("down", -0.06))}
    adapt = dataclasses.replace(quick_config.adapt, refit=False)

    def run(together: bool):
        keyed = KeyedRunners(lambda key: Runner(ensemble, adapt=adapt), ticks=together)
        blocks = [in_input_order(keyed.process(Chunk(np.full(3, timestamps[t]), np.array([s[t] for s in series.values()]),
                                                     np.arange(3) + 1 + 3 * t, series=list(series))))
                  for t in range(n)]
        return np.array([b.p_value for b in blocks]), np.array([b.is_anomaly for b in blocks]), keyed

    p_ticks, flags_ticks, keyed = run(True)
    p_alone, flags_alone, _ = run(False)
    np.testing.assert_array_equal(flags_ticks, flags_alone)
    np.testing.assert_allclose(p_ticks, p_alone, rtol=1e-9)
    assert flags_ticks[:, 0].sum() >= 10 and flags_ticks[:, 2].sum() >= 5  # records of the climb and the fall
    runner = keyed.active["up"].runner
    runner.flush()
    assert runner._high == series["up"].max() and runner._seen == ensemble.range_[2] + n
