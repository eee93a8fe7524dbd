"""Bad input never crashes the runner and never vanishes: every input line ends exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.io.data import format_timestamp
from anomaly.io.parse import parse_csv_lines, parse_line
from anomaly.online.runner import Runner
from anomaly.simulate import simulate


def series_lines(ensemble, n: int, seed: int = 4) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return ``n`` simulated points on the ensemble's grid as CSV lines, with their stamps and values."""
    series = simulate(n, seed=seed, start_index=20_000)
    return ([f"{format_timestamp(t)},{v:.5f}" for t, v in zip(series.timestamps, series.values)],
            series.timestamps, np.round(series.values, 5))


def run_lines(ensemble, lines: list[str], gaps: str = "fill", sizes=(10_000,)):
    """Parse and score ``lines`` in chunks of the given sizes (cycled); return blocks, rejects, runner."""
    runner = Runner(ensemble, gaps)
    blocks, rejected, start, k = [], [], 0, 0
    while start < len(lines):
        size = sizes[k % len(sizes)]
        block, bad = runner.process(parse_csv_lines(lines[start:start + size], start + 2, 2, 0, 1))
        blocks.append(block)
        rejected += bad
        start, k = start + size, k + 1
    return blocks, rejected, runner


def test_a_short_gap_is_filled_flagged_and_never_an_anomaly(quick_ensemble):
    lines, stamps, values = series_lines(quick_ensemble, 400)
    del lines[300:303]  # three points missing
    blocks, rejected, runner = run_lines(quick_ensemble, lines, sizes=(77,))
    decisions = [d for b in blocks for d in b.decisions()]
    filled = [d for d in decisions if d.status == "filled"]
    assert not rejected and len(decisions) == 400 and runner.counts.filled == 3
    assert [d.timestamp for d in filled] == stamps[300:303].tolist()
    expected = values[299] + (values[303] - values[299]) * np.arange(1, 4) / 4
    np.testing.assert_allclose([d.value for d in filled], expected)
    assert not any(d.is_anomaly for d in filled)
    assert runner.counts.points == 397  # input points only


def test_a_gap_longer_than_a_window_starts_the_warm_up_again(quick_ensemble):
    lines, _, _ = series_lines(quick_ensemble, 900)
    del lines[400:400 + quick_ensemble.window + 5]
    blocks, rejected, runner = run_lines(quick_ensemble, lines)
    statuses = [d.status for b in blocks for d in b.decisions()]
    assert "filled" not in statuses and runner.counts.restarts == 1
    warm = quick_ensemble.window - 1
    assert statuses[400:400 + warm] == ["warm-up"] * warm and statuses[400 + warm] == "ok"


@pytest.mark.parametrize("sizes", [(50,), (301, 50)])  # (301, ...): the gap's point ends a chunk
def test_quarantine_mode_quarantines_the_point_after_a_gap(quick_ensemble, sizes):
    lines, _, _ = series_lines(quick_ensemble, 600)
    del lines[300:302]
    blocks, rejected, runner = run_lines(quick_ensemble, lines, gaps="quarantine", sizes=sizes)
    assert [(r.position, r.reason) for r in rejected] == [(302, "gap: 2 missing points before this one")]
    statuses = [d.status for b in blocks for d in b.decisions()]
    assert len(statuses) == 597 and "filled" not in statuses
    assert statuses[299] == "ok" and statuses[300:300 + quick_ensemble.window - 1] == ["warm-up"] * (quick_ensemble.window - 1)


def test_missing_values_and_timestamps_are_named():
    chunk = parse_csv_lines(["2026-03-01 00:00:00,", ",5", " 2026-03-01 00:10:00 ,x"], 2, 2, 0, 1)
    assert [r.reason for r in chunk.rejected][:2] == ["missing value", "missing timestamp"]
    assert chunk.rejected[2].reason.startswith("unparsable")
    assert parse_line('{"timestamp": "2026-03-01 00:00:00", "value": null}', 1, 0, 60).reason == "missing value"
    assert parse_line("2026-03-01 00:00:00,", 1, 0, 60).reason == "missing value"


GARBAGE = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=25),
    st.sampled_from(["", ",", "nan", "2026-13-01 00:00:00,1", "2026-03-01 00:00:00,inf",
                     '"2026-03-01 00:00:00",1', "2026-03-01 00:00:00,1,2", "{}"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_garbage_among_valid_lines_is_all_accounted_for(quick_ensemble, data):
    lines, _, _ = series_lines(quick_ensemble, 300)
    mixed = []
    for line in lines:
        action = data.draw(st.sampled_from(["keep"] * 6 + ["drop", "garbage", "repeat", "swap"]))
        if action == "drop":
            continue  # a gap
        if action == "garbage":
            mixed.append(data.draw(GARBAGE))
        if action == "repeat" and mixed:
            mixed.append(mixed[-1])  # a duplicate timestamp (or repeated garbage)
        if action == "swap" and mixed:
            mixed.insert(len(mixed) - 1, line)  # out of order
            continue
        mixed.append(line)
    sizes = data.draw(st.lists(st.integers(1, 120), min_size=1, max_size=4))
    gaps = data.draw(st.sampled_from(["fill", "quarantine"]))
    blocks, rejected, runner = run_lines(quick_ensemble, mixed, gaps, sizes)
    outputs = [p for b in blocks for p, f in zip(b.positions.tolist(), b.status()) if f != "filled"]
    ended = sorted(outputs + [r.position for r in rejected])
    assert ended == list(range(2, 2 + len(mixed)))  # each input line exactly once
    assert runner.counts.points == len(outputs) and runner.counts.rejected == len(rejected)
    for block in blocks:
        assert np.isfinite(block.values).all()
        assert (block.p_value >= 0).all() and (block.p_value <= 1).all()
