"""Every history gets a model: irregular sampling (sequence mode), short heads (down to 100 rows), and a
constant history (where any change is anomalous)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.io.records import Chunk
from anomaly.model.training import MIN_POINTS, regularize, train
from anomaly.online.runner import Runner


def irregular(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps with most of a 5-minute grid missing (steps of 1-12 intervals), a smooth daily cycle."""
    rng = np.random.default_rng(seed)
    steps = 300.0 * rng.choice([1, 1, 2, 5, 12], size=n)
    timestamps = 1.7e9 + np.cumsum(steps)
    values = 50 + 10 * np.sin(2 * np.pi * timestamps / 86_400) + rng.normal(0, 0.5, n)
    return timestamps, values


def test_a_history_with_too_many_holes_is_kept_as_a_sequence():
    timestamps, values = irregular(600, seed=0)
    data = regularize(timestamps, values)
    assert data.sequence and data.grid.sequence
    assert len(data.values) == 600 and data.filled == 0  # nothing made up
    np.testing.assert_array_equal(data.values, values)
    assert np.all(np.diff(data.positions) >= 0)  # positions still give each point its phase


def test_sequence_mode_is_trained_recorded_and_streamed_without_gap_filling(quick_config):
    timestamps, values = irregular(3000, seed=1)
    ensemble, report = train(timestamps[:1500], values[:1500], quick_config, seed=0)
    assert report["sequence"] is True and ensemble.grid.sequence
    stream = values[1500:].copy()
    stream[700] += 15  # a spike
    runner = Runner(ensemble)
    block = runner.process(Chunk(timestamps[1500:], stream, np.arange(1500) + 1))[0]
    assert len(block.values) == 1500 and runner.counts.filled == 0 and runner.counts.restarts == 0
    assert block.is_anomaly[700]
    assert block.is_anomaly.sum() <= 10


@pytest.mark.parametrize("seed", [0, 1])
def test_a_100_row_history_trains_smaller_windows_and_finds_a_spike(quick_config, seed):
    rng = np.random.default_rng(seed)
    timestamps = 1.7e9 + 300.0 * np.arange(1100)
    values = 20 + 3 * np.sin(np.arange(1100) / 7) + rng.normal(0, 0.3, 1100)
    values[600] += 6
    ensemble, report = train(timestamps[:MIN_POINTS], values[:MIN_POINTS], quick_config, seed=seed)
    assert report["window"] < quick_config.windows.size and ensemble.window <= MIN_POINTS // 2
    block = Runner(ensemble).process(Chunk(timestamps, values, np.arange(1100) + 1))[0]
    assert block.is_anomaly[600]
    assert block.is_anomaly.sum() <= 15  # of 1,000 normal points


def test_a_constant_history_flags_any_change_and_nothing_else(quick_config):
    timestamps = 1.7e9 + 60.0 * np.arange(2000)
    values = np.full(2000, 5.0)
    values[1500:1510] = 5.5
    ensemble, _ = train(timestamps[:1000], values[:1000], quick_config, seed=0)
    block = Runner(ensemble).process(Chunk(timestamps, values, np.arange(2000) + 1))[0]
    assert block.is_anomaly[1500]
    assert not block.is_anomaly[:1500].any()
