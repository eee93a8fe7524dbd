"""A tick of many series (one point of each, scored together) decides exactly as each series' own runner would."""

from __future__ import annotations

import dataclasses
import gc
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from anomaly.io.alarms import AlarmFilter
from anomaly.io.records import Chunk
from anomaly.model.runs import load_run
from anomaly.online.keyed import KeyedRunners, in_input_order
from anomaly.online.runner import Runner
from anomaly.simulate import simulate

TICKS = 700  # past the adapter's first boundaries (every 256 points): recalibrated copies tick too
FIELDS = ("timestamps", "values", "score", "p_value", "is_anomaly", "p_detectors", "warmup", "expected", "spread",
          "positions", "raw")


@pytest.fixture(scope="module", params=["two runs of one shape", "every detector", "warped values"])
def ensembles(request, quick_ensemble, second_ensemble, family_run, quick_config):
    """Series name -> its models. Two runs of one shape: two slots of one group, and a series sharing the
    first's models. Every detector: the detectors without stacked numbers are scored by calling each
    detector object (the fallback). Warped values: series whose scalers warp (the log and the square root)
    beside one that does not, in one group."""
    if request.param == "every detector":
        family = load_run(family_run)[0]
        return {"a": family, "b": family, "c": family, "d": family}
    if request.param == "warped values":
        from anomaly.model.training import train

        history = simulate(quick_config.training.n_points, seed=2, config=quick_config.simulator)
        warped = {kind: train(history.timestamps, history.values, dataclasses.replace(
            quick_config, training=dataclasses.replace(quick_config.training, warp=kind)))[0]
            for kind in ("log", "sqrt")}
        assert {e.scaler.warp for e in warped.values()} == {"log", "sqrt"}
        return {"a": warped["log"], "b": warped["sqrt"], "c": quick_ensemble, "d": warped["log"]}
    return {"a": quick_ensemble, "b": second_ensemble, "c": second_ensemble, "d": quick_ensemble}


def ticks(ensembles, config) -> list[Chunk]:
    """One chunk per tick, one point of each series, with trouble: a NaN, a duplicate timestamp, a gap."""
    start = config.training.n_points
    series = {key: simulate(TICKS, seed=40 + i, anomalies=True, start_index=start, config=config.simulator)
              for i, key in enumerate(ensembles)}
    chunks, position = [], 1
    for t in range(TICKS):
        keys, stamps, values = [], [], []
        for key, one in series.items():
            if key == "d" and 300 <= t < 303:
                continue  # a gap of three points, filled when it comes back
            stamp, value = float(one.timestamps[t]), float(one.values[t])
            if key == "b" and t == 150:
                value = math.nan
            if key == "c" and t == 200:
                stamp = float(one.timestamps[t - 1])  # a duplicate: quarantined
            keys.append(key), stamps.append(stamp), values.append(value)
        chunks.append(Chunk(np.array(stamps), np.array(values), np.arange(position, position + len(keys)),
                            series=keys))
        position += len(keys)
    return chunks


def streamed(ensembles, config, chunks, together: bool):
    """Stream the chunks; return each series' decisions (one block), the rejected lines, the events, the runners
    and how many points ticks scored together."""
    # without refits, as streams of many series run: the adapters thin what they keep (see KeptPoints)
    adapt = dataclasses.replace(config.adapt, refit=False)
    keyed = KeyedRunners(lambda key: Runner(ensembles[key], adapt=adapt), ticks=together)
    blocks, rejected, events, ticked = [], [], [], 0
    for chunk in chunks:
        results = keyed.process(chunk)
        ticked += sum(len(result.block) for result in results if result.series is None)
        blocks.append(in_input_order(results))
        rejected += [(r.series, r.raw, r.reason) for result in results for r in result.rejected]
        events += sorted((e.incident.series, e.kind, e.incident.to_dict()) for result in results for e in result.events)
    return blocks, rejected, events, keyed, ticked


@pytest.mark.parametrize("parts", ["one part", "parts on every core"])
def test_a_tick_decides_every_point_as_each_series_own_runner_does(ensembles, quick_config, parts, monkeypatch):
    if parts == "parts on every core":  # as a tick of thousands of series is decided: in parts, on a pool
        monkeypatch.setattr("anomaly.online.ticks.PARALLEL_ROWS", 2)
        pool = ThreadPoolExecutor(2)
        monkeypatch.setattr("anomaly.online.ticks._pool", lambda: pool)
    chunks = ticks(ensembles, quick_config)
    together = streamed(ensembles, quick_config, chunks, together=True)
    alone = streamed(ensembles, quick_config, chunks, together=False)
    points = sum(len(chunk) for chunk in chunks)
    assert together[4] > 0.7 * points  # most points were scored together (not those in warm-up)
    assert alone[4] == 0
    # the default detectors run the same operations row by row: equal to the last bit; scikit-learn's
    # models (the fallback) may round a batch's last bit differently from one window's, as in any replay
    exact = set(ensembles["a"].names) <= {"dense_ae", "shesd", "holt_winters", "ewma"}
    for mine, theirs in zip(together[0], alone[0]):
        assert mine.series == theirs.series
        for name in FIELDS:
            if exact or getattr(mine, name).dtype != np.float64:
                np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=name)
            else:
                np.testing.assert_allclose(getattr(mine, name), getattr(theirs, name), rtol=1e-9, atol=1e-12,
                                           err_msg=name)
        assert mine.status() == theirs.status()
    assert together[1] == alone[1] and len(alone[1]) == 2  # the NaN and the duplicate, each in its series
    def when(events):  # which incidents, when (their peaks' scores may differ in the last bit where not exact)
        return [(series, kind, {key: incident[key] for key in ("id", "start", "end", "flagged")})
                for series, kind, incident in events]

    assert (together[2] == alone[2] if exact else when(together[2]) == when(alone[2]))
    assert any(kind == "opened" for _, kind, _ in alone[2])
    keyed, reference = together[3], alone[3]
    assert keyed.counts() == reference.counts() and keyed.counts().filled == 3 + 1 + 1  # the gap, the NaN, the duplicate
    for key in ensembles:  # the whole online state, the adapter's and the alarm filter's included, byte for byte
        assert not exact or (keyed._snapshot(key, keyed.active[key])
                             == reference._snapshot(key, reference.active[key])), key
    assert sum(runner.adapter.recalibrations for runner in reference.runners()) > 0


def test_the_room_of_models_no_longer_in_use_is_given_back(quick_ensemble, quick_config):
    """A recalibration replaces a series' models: the tick path lets the old ones' numbers go. A recalibrated
    ensemble shares its detectors with the trained one: their learned numbers are held once."""
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble, adapt=quick_config.adapt))
    n = 3000  # recalibrated every 1,000 points
    series = simulate(n, seed=50, start_index=quick_config.training.n_points, config=quick_config.simulator)
    for t in range(n):
        keyed.process(Chunk(series.timestamps[t:t + 1], series.values[t:t + 1], np.array([t + 1]), series=["x"]))
    runner = keyed.active["x"].runner
    assert runner.adapter.recalibrations >= 2
    gc.collect()
    group, _ = keyed._ticks.place(runner.ensemble)
    assert group._size - len(group._free) == 2  # the trained models (the adapter's baseline) and those in use
    assert group._numbers_size - len(group._free_numbers) == 1 and len(group._shared) == 1


def test_a_series_a_lane_holds_goes_on_exactly_whatever_touches_it_between_ticks(quick_ensemble, quick_config,
                                                                                   tmp_path):
    """Between ticks a lane holds each series' hot state (anomaly.online.lane). Points in the future, a save of
    every series, the counts read mid-stream, a series let go while idle and brought back: each takes the
    series back from the lane, and the records, events, counts and states (alarm filters included: they
    open an incident on 2 flags in 20 points and close it
    at the next unflagged one) stay those of each series alone."""
    n, start = 600, quick_config.training.n_points
    series = {key: simulate(n, seed=seed, anomalies=True, start_index=start, config=quick_config.simulator)
              for key, seed in zip("abc", (64, 65, 71))}  # each with an anomaly flagged twice in a row
    interval = float(np.diff(series["a"].timestamps[:2])[0])
    chunks, clocks = [], []
    for t in range(n):
        keys = [key for key in series if not (key == "c" and 300 <= t < 340)]  # c falls silent, then comes back
        stamps = [float(series[key].timestamps[t]) for key in keys]
        # the wall clock keeps up with the stream, but at tick 400 it lags: the next grid step is in the future
        clocks.append(0.0 if t == 400 else max(stamps))
        if t == 450:
            stamps[0] += 10 * 365 * 86400.0  # a's point ten years ahead: in the future, quarantined
        chunks.append(Chunk(np.array(stamps), np.array([float(series[key].values[t]) for key in keys]),
                        np.arange(len(keys)) + 1 + 3 * t, series=keys))

    def run(together: bool, folder):
        tick = [0]
        keyed = KeyedRunners(lambda key: Runner(quick_ensemble, adapt=quick_config.adapt, future_horizon=interval / 2,
                                                wall_clock=lambda: clocks[tick[0]]),
                             lambda key: AlarmFilter(2, 20, cooldown=1, series=key), idle_after=30.0, state_dir=folder,
                             clock=lambda: float(tick[0]), ticks=together)
        records, rejected, events, counts, parked = [], [], [], [], []
        for t, chunk in enumerate(chunks):
            tick[0] = t
            results = keyed.process(chunk)
            records.append(in_input_order(results))
            rejected += [(r.series, r.raw, r.reason) for result in results for r in result.rejected]
            events += sorted((e.incident.series, e.kind, e.incident.to_dict()) for result in results
                             for e in result.events)
            parked.append(sum(len(lane) for lane in keyed._lanes.values()))
            if t == 250:
                keyed.save_all()
            if t == 500:
                counts.append(keyed.counts())
        states = {key: keyed._snapshot(key, active) for key, active in keyed.active.items()}
        return records, rejected, events, counts, keyed, states, parked

    together = run(True, tmp_path / "together")
    alone = run(False, tmp_path / "alone")
    assert max(together[6][:399]) == 3 and max(alone[6]) == 0  # the lane held every series
    assert together[4].evicted == alone[4].evicted == 1 and together[4].restored == 1
    assert [reason for _, _, reason in together[1]] == ["timestamp in the future"] * 4
    assert any(kind == "opened" for _, kind, _ in alone[2])
    for mine, theirs in zip(together[0], alone[0]):
        assert (mine is None) == (theirs is None)  # (None: every point of the tick was quarantined)
        for name in FIELDS if mine is not None else ():
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=name)
    assert together[1:4] == alone[1:4]
    assert together[5] == alone[5]
    assert sum(len(lane) for lane in together[4]._lanes.values()) == 0  # the snapshots took every series back


def test_a_window_that_spans_too_many_grid_steps_for_a_lane_is_scored_by_its_runner(quick_ensemble, quick_config,
                                                                                    monkeypatch):
    """A lane holds each window's grid positions as 16-bit offsets from its last point: a window reaching further
    back (an irregular series in sequence mode can) is never parked, and its points are decided as before."""
    chunks = ticks({"a": quick_ensemble}, quick_config)[:400]
    _, _, _, parked, ticked = streamed({"a": quick_ensemble}, quick_config, chunks, together=True)
    assert ticked > 200 and any(len(lane) for lane in parked._lanes.values())
    monkeypatch.setattr("anomaly.online.runner.OFFSET_SPAN", 1)  # less than any window spans
    blocks, _, _, alone, ticked = streamed({"a": quick_ensemble}, quick_config, chunks, together=True)
    reference = streamed({"a": quick_ensemble}, quick_config, chunks, together=False)[0]
    assert ticked == 0 and not any(len(lane) for lane in alone._lanes.values())
    for block, expected in zip(blocks, reference):
        np.testing.assert_array_equal(block.p_value, expected.p_value)


def test_a_series_seasonal_profiles_are_held_once_by_its_detectors_and_the_tick_group(quick_ensemble, quick_config):
    """The tick group stacks every series' learned arrays (seasonal profiles); each detector then reads its own
    from there (a series' profiles held once, not twice), through the group's growth, with the same numbers; and
    when no ensemble uses them any more, each detector gets its own copy back before the row is reused."""
    import copy

    def own(i: int):
        """The quick models with detectors of their own: learned arrays of their own (moved by i / 1000)."""
        ensemble = copy.copy(quick_ensemble)
        ensemble.detectors = dict(ensemble.detectors)
        for name, detector in ensemble.detectors.items():
            if hasattr(detector, "many_params"):
                detector = ensemble.detectors[name] = copy.copy(detector)
                for param, value in detector.many_params().items():
                    if np.ndim(value):
                        setattr(detector, f"{param}_", np.asarray(value) + i / 1000)
        return ensemble

    trained = {f"s{i}": own(i) for i in range(20)}  # more than the group's first 16 rows: its numbers grow
    arrays = {key: {name: {param: value.copy() for param, value in d.many_params().items() if np.ndim(value)}
                    for name, d in ensemble.detectors.items() if hasattr(d, "many_params")}
              for key, ensemble in trained.items()}
    assert any(arrays["s0"].values()), "no detector with a learned array: nothing to test"
    keyed = KeyedRunners(lambda key: Runner(trained[key], adapt=None))
    n = quick_ensemble.window + 16  # past warm-up: ticks
    series = {key: simulate(n, seed=200 + i, start_index=quick_config.training.n_points,
                            config=quick_config.simulator) for i, key in enumerate(trained)}
    for t in range(n):
        keyed.process(Chunk(np.array([one.timestamps[t] for one in series.values()]),
                            np.array([one.values[t] for one in series.values()]), np.arange(len(series)) + 1 + t * 20,
                            series=list(series)))
    group, _ = keyed._ticks.place(trained["s0"])
    assert group._numbers_size == 20
    for key, ensemble in trained.items():
        for name, params in arrays[key].items():
            for param, value in params.items():
                held = getattr(ensemble.detectors[name], f"{param}_")
                assert np.shares_memory(held, group._numbers[f"{name}.{param}"]), (key, name, param)
                np.testing.assert_array_equal(held, value)
                assert not held.flags.writeable
    # the last user of a series' numbers goes: its detectors hold their own copies again, and the row is free
    detectors = trained.pop("s3").detectors
    keyed._let_go("s3")  # (as an idle series is let go)
    gc.collect()
    group.tidy()
    for name, params in arrays["s3"].items():
        for param, value in params.items():
            held = getattr(detectors[name], f"{param}_")
            assert not np.shares_memory(held, group._numbers[f"{name}.{param}"])
            np.testing.assert_array_equal(held, value)
    assert len(group._free_numbers) == 1


def test_numbers_no_ensemble_uses_twice_before_a_tidy_are_let_go_once(quick_ensemble):
    """A series let go and restored twice between two ticks: its models' numbers fall unused twice, and are freed
    once (not a KeyError in the tick after)."""
    import copy

    from anomaly.online.ticks import _Group

    group = _Group(quick_ensemble)
    restored = copy.copy(quick_ensemble)  # as a restored series' models: the same detectors and scaler
    for _ in range(2):
        group.remove(group.add(restored))
    group.tidy()
    assert len(group._free_numbers) == 1 and not group._shared
    assert all(not np.shares_memory(value, column) for d in quick_ensemble.detectors.values()
               if hasattr(d, "many_params") for value in d.many_params().values() if np.ndim(value)
               for column in group._numbers.values())  # its detectors hold their own arrays again
