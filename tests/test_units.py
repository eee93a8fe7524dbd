"""Small pure pieces: config, seasonality, ESD critical values, windows, data parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomaly.config import Config, load_config
from anomaly.io.data import parse_timestamp
from anomaly.model.detectors.shesd import esd_critical_values
from anomaly.model.seasonality import detect_period
from anomaly.model.windows import Scaler, TimeGrid, sliding

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_documents_the_defaults():
    assert load_config(ROOT / "anomaly.example.toml") == Config()


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[calibration]\ntarget_fa = 0.01\n")
    with pytest.raises(ValueError, match="target_fa"):
        load_config(path)


@pytest.mark.parametrize("period", [12, 24, 144])
def test_period_is_found_from_the_data(period):
    rng = np.random.default_rng(period)
    t = np.arange(30 * period)
    values = 0.01 * t + np.sin(2 * np.pi * t / period) + 0.3 * rng.normal(size=len(t))
    assert detect_period(values) == period


def test_white_noise_has_no_period():
    assert detect_period(np.random.default_rng(0).normal(size=3000)) == 0


def test_esd_critical_value_matches_grubbs_table():
    # the first generalised-ESD critical value is Grubbs' two-sided value: 2.709 at n=20, alpha 0.05
    assert esd_critical_values(20, 3, 0.05)[0] == pytest.approx(2.709, abs=0.002)
    assert np.all(np.diff(esd_critical_values(100, 10, 0.05)) < 0)


def test_windows_belong_to_their_last_point():
    w = sliding(np.arange(10.0), 4)
    assert w.shape == (7, 4) and w[0, -1] == 3 and w[-1, -1] == 9
    with pytest.raises(ValueError, match="at least size=4"):
        sliding(np.arange(3.0), 4)


def test_scaler_is_robust_and_invertible():
    values = np.r_[np.random.default_rng(0).normal(10, 2, 1000), 1e6]
    scaler = Scaler.fit(values)
    assert scaler.center == pytest.approx(10, abs=0.3) and scaler.scale == pytest.approx(2, rel=0.15)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)


def test_time_grid_positions_survive_jitter_and_gaps():
    grid = TimeGrid.infer(np.array([0.0, 300, 600, 900, 1800]))
    assert grid.interval == 300
    np.testing.assert_array_equal(grid.positions(np.array([0.0, 301, 1799, 3000])), [0, 1, 6, 10])


@pytest.mark.parametrize("text,expected", [
    ("2026-01-01 00:05:00", 1767225900.0), ("2026-01-01T00:05:00Z", 1767225900.0),
    ("2026-01-01T01:05:00+01:00", 1767225900.0), ("1767225900", 1767225900.0),
    ("1767225900000", 1767225900.0)])
def test_timestamps_in_every_accepted_format(text, expected):
    assert parse_timestamp(text) == expected


def test_unreadable_timestamp_is_named():
    with pytest.raises(ValueError, match="yesterday"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize("text,form,expected", [
    ("1767225900", "epoch-s", 1767225900.0), ("1767225900000", "epoch-ms", 1767225900.0),
    ("1767225900", "epoch-ms", 1767225.9),  # explicit: no guessing from the size
    ("2026-01-01T00:05:00Z", "iso", 1767225900.0)])
def test_timestamp_formats_can_be_chosen(text, form, expected):
    assert parse_timestamp(text, form) == pytest.approx(expected)


@pytest.mark.parametrize("text,form,message", [("1767225900", "iso", "not ISO 8601"),
                                               ("2026-01-01", "epoch-s", "not an epoch number"),
                                               ("x", "epoch", "time format must be one of")])
def test_a_timestamp_in_another_form_is_refused(text, form, message):
    with pytest.raises(ValueError, match=message):
        parse_timestamp(text, form)


def test_block_parsing_follows_the_chosen_format():
    from anomaly.io.parse import parse_csv_lines

    chunk = parse_csv_lines(["1767225900000,1", "1767225960000,2"], 2, 2, 0, 1, time_format="epoch-ms")
    assert chunk.timestamps.tolist() == [1767225900.0, 1767225960.0]
    chunk = parse_csv_lines(["1767225900,1", "2026-01-01 00:06:00,2"], 2, 2, 0, 1, time_format="iso")
    assert chunk.timestamps.tolist() == [1767225960.0] and "not ISO" in chunk.rejected[0].reason


def test_timestamps_give_the_exact_calendar_period():
    rng = np.random.default_rng(3)
    t = np.arange(288 * 8)  # eight days of five-minute points
    values = np.sin(2 * np.pi * t / 288) + 0.4 * np.sin(4 * np.pi * t / 288 + 1) + 0.8 * rng.normal(size=len(t))
    assert detect_period(values, interval=300.0) == 288
    hourly = np.sin(2 * np.pi * np.arange(3000) / 60) + 0.3 * rng.normal(size=3000)  # minute data, hourly cycle
    assert detect_period(hourly, interval=60.0) == 60


def test_a_calendar_cycle_seen_twice_is_found_but_a_cycle_of_no_calendar_needs_three():
    rng = np.random.default_rng(5)
    t = np.arange(700)  # 2.4 days of five-minute points
    daily = np.where(t % 288 < 144, 1.0, -1.0) + 0.3 * rng.normal(size=len(t))
    assert detect_period(daily, interval=300.0) == 288  # a day is expected: two of them show it
    odd = np.where(t % 250 < 125, 1.0, -1.0) + 0.3 * rng.normal(size=len(t))  # 2.8 cycles of 250 points
    assert detect_period(odd, interval=300.0) == 0
    assert detect_period(np.concatenate([odd, odd[:100]]), interval=300.0) == 250  # three cycles: found


def test_a_smooth_series_without_a_cycle_gets_no_calendar_period():
    walk = np.cumsum(np.random.default_rng(4).normal(size=2000))  # correlated at every short lag
    assert detect_period(walk, interval=300.0) == 0


def test_after_events_buckets_normal_points_by_distance_after_the_last_event():
    from anomaly.evaluate import after_events, summarise

    labels = np.zeros(200, dtype=bool)
    labels[50:60] = labels[100] = True
    flags = np.zeros(200, dtype=bool)
    flags[[10, 60, 75, 101, 150]] = True  # before any event: in no bucket
    after = after_events(flags, labels)
    assert after.labels == ["1-9", "10-32", "33-99", "100+"]
    # 60..99 follow the first event (distance 1..40), 101..199 the second (1..99)
    assert after.normal == (9 + 9, 23 + 23, 8 + 67, 0)
    assert after.flagged == (2, 1, 1, 0)  # 60 and 101; 75 (distance 16); 150 (distance 50)
    assert after.rates[3] != after.rates[3]  # NaN: no points that far
    metrics = summarise(flags, labels)
    assert metrics["normal_after_10-32"] == 46 and metrics["flagged_after_1-9"] == 2
