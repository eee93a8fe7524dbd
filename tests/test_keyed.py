"""Many series in one stream: each series is decided as if it streamed alone, bad points stay in their series,
and an idle series is let go and comes back exactly where it was."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.io.records import Chunk
from anomaly.online.keyed import KeyedRunners, state_name
from anomaly.online.runner import Runner
from anomaly.simulate import simulate

N = 2_500


@pytest.fixture(scope="module")
def three(quick_config):
    """Three simulated series with anomalies (the same clock), and their points interleaved at random."""
    start = quick_config.training.n_points
    series = {key: simulate(N, seed=seed, anomalies=True, start_index=start, config=quick_config.simulator)
              for key, seed in (("cpu", 31), ("latency", 32), ("queue", 33))}
    keys = np.repeat(list(series), N)
    order = np.argsort(np.random.default_rng(0).random(len(keys)), kind="stable")
    # each series keeps its own order: sort by (random slot) but take each series' points in sequence
    slots = {key: iter(range(N)) for key in series}
    picked = [(key, next(slots[key])) for key in keys[order]]
    timestamps = np.array([series[key].timestamps[i] for key, i in picked])
    values = np.array([series[key].values[i] for key, i in picked])
    return series, [key for key, _ in picked], timestamps, values


def alone(ensemble, adapt, series) -> np.ndarray:
    block, _ = Runner(ensemble, adapt=adapt).process(Chunk(series.timestamps, series.values, np.arange(1, N + 1)))
    return np.column_stack([block.p_value, block.is_anomaly, block.p_detectors])


def stream(keyed: KeyedRunners, keys, timestamps, values, size: int = 257, clock=None):
    """Feed the interleaved points in chunks; return each series' decisions, its rejects and its incidents."""
    out, rejected, events = {}, {}, {}
    for i in range(0, len(values), size):
        if clock is not None:
            clock.tick(i)
        chunk = Chunk(timestamps[i:i + size], values[i:i + size], np.arange(i, i + len(values[i:i + size])) + 1,
                      series=keys[i:i + size])
        for result in keyed.process(chunk):
            block = result.block
            out.setdefault(result.series, []).append(np.column_stack([block.p_value, block.is_anomaly,
                                                                      block.p_detectors]))
            rejected.setdefault(result.series, []).extend(result.rejected)
            events.setdefault(result.series, []).extend(result.events)
    return {key: np.concatenate(parts) for key, parts in out.items()}, rejected, events


def test_each_series_of_an_interleaved_stream_is_decided_as_if_it_streamed_alone(quick_ensemble, quick_config, three):
    series, keys, timestamps, values = three
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble, adapt=quick_config.adapt))
    decided, rejected, events = stream(keyed, keys, timestamps, values)
    assert set(decided) == set(series) and not any(rejected.values())
    for key, one in series.items():
        np.testing.assert_array_equal(decided[key], alone(quick_ensemble, quick_config.adapt, one))
        assert events[key]  # each series has incidents of its own
    assert len(keyed.active) == 3


def test_a_bad_point_in_one_series_never_touches_another(quick_ensemble, quick_config, three):
    series, keys, timestamps, values = three
    values, timestamps = values.copy(), timestamps.copy()
    cpu = [i for i, key in enumerate(keys) if key == "cpu"]
    values[cpu[700]] = np.nan  # a non-finite value in cpu...
    timestamps[cpu[900]] = timestamps[cpu[10]]  # ...and a point out of order
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble, adapt=quick_config.adapt))
    decided, rejected, _ = stream(keyed, keys, timestamps, values)
    assert sorted(r.reason for r in rejected["cpu"]) == ["non-finite value", "timestamp out of order"]
    assert not rejected["latency"] and not rejected["queue"]
    for key in ("latency", "queue"):
        np.testing.assert_array_equal(decided[key], alone(quick_ensemble, quick_config.adapt, series[key]))
    cpu_counts = keyed.active["cpu"].runner.counts
    assert (cpu_counts.points, cpu_counts.rejected, cpu_counts.filled) == (N - 2, 2, 2)  # their holes were filled


class Clock:
    """Seconds that pass as the stream goes: one series falls silent for a while in the middle."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, i: int) -> None:
        self.now = float(i)


def test_an_idle_series_is_saved_let_go_and_comes_back_exactly_where_it_was(quick_ensemble, quick_config, three,
                                                                            tmp_path):
    series, keys, timestamps, values = three
    quiet = [i for i, key in enumerate(keys) if key == "queue"]
    # queue falls silent: its points 1000-1599 arrive only after everything else has moved on a long way
    held = set(quiet[1000:1600])
    reorder = [i for i in range(len(keys)) if i not in held]
    cut = reorder.index(quiet[1600]) if quiet[1600] in reorder else len(reorder)
    reorder = reorder[:cut] + sorted(held) + reorder[cut:]
    keys_r, stamps_r, values_r = [keys[i] for i in reorder], timestamps[reorder], values[reorder]
    clock = Clock()
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble, adapt=quick_config.adapt), idle_after=900,
                         state_dir=tmp_path, clock=clock)
    decided, _, _ = stream(keyed, keys_r, stamps_r, values_r, size=97, clock=clock)
    assert keyed.evicted >= 1 and keyed.restored >= 1
    for key, one in series.items():
        np.testing.assert_array_equal(decided[key], alone(quick_ensemble, quick_config.adapt, one))
    assert keyed.save_all() == len(keyed.active)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(state_name(key) for key in keyed.active)


def test_without_a_state_folder_an_idle_series_is_dropped_and_starts_afresh(quick_ensemble, three):
    series, _, _, _ = three
    clock = Clock()
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble), idle_after=10, clock=clock)
    one = series["cpu"]
    for start, now in ((0, 0.0), (300, 100.0)):  # no gap: only the drop can explain a second warm-up
        clock.now = now
        part = slice(start, start + 300)
        [result] = keyed.process(Chunk(one.timestamps[part], one.values[part], np.arange(300) + 1,
                                       series=["cpu"] * 300))
        assert result.block.warmup.sum() == quick_ensemble.window - 1  # warm-up again after the drop
    assert keyed.evicted == 1 and keyed.restored == 0


def test_a_csv_with_a_series_column_feeds_each_series_its_own_runner(quick_ensemble, three, tmp_path):
    """The file side: csv_chunks(series_column=...) keys every point; JSON lines name theirs in "series"."""
    from anomaly.io.parse import parse_line
    from anomaly.io.sinks import format_timestamps
    from anomaly.io.sources import csv_chunks

    series, keys, timestamps, values = three
    rows = [f"{t},{key},{v!r}\n" for t, key, v in zip(format_timestamps(timestamps), keys, values.tolist())]
    rows.insert(100, "2026-01-01 00:00:00,cpu,not a number\n")
    (tmp_path / "many.csv").write_text("timestamp,series,value\n" + "".join(rows))
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble))
    decided, rejected = {}, []
    for chunk in csv_chunks(tmp_path / "many.csv", series_column="series", chunk_bytes=4096):
        for result in keyed.process(chunk):
            decided.setdefault(result.series, []).append(result.block.p_value)
            rejected += result.rejected
    assert [r.position for r in rejected] == [102] and "not a number" in rejected[0].raw
    for key, one in series.items():
        block, _ = Runner(quick_ensemble).process(Chunk(one.timestamps, one.values, np.arange(1, N + 1)))
        np.testing.assert_array_equal(np.concatenate(decided[key]), block.p_value)
    with pytest.raises(ValueError, match="no column 'host'"):
        csv_chunks(tmp_path / "many.csv", series_column="host")
    assert parse_line('{"timestamp": "2026-01-01 00:00:00", "value": 3, "series": "db-1"}', 1, 0, 60).series == "db-1"
    assert "not a name" in parse_line('{"value": 3, "series": {"a": 1}}', 1, 0, 60).reason


def test_stream_py_scores_a_file_of_many_series_each_as_if_alone_and_names_the_series_everywhere(
        quick_run, quick_config, tmp_path):
    """The CLI: a CSV with a 'series' column gives each series the records it gets alone, in input order, each
    record, incident and quarantined line naming its series; with --state the file in two parts gives the same."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from anomaly.io.sinks import format_timestamps

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    rows = []
    for key, seed in (("cpu", 41), ("db,1", 42), ("queue", 43)):
        one = simulate(2_000, seed=seed, anomalies=True, start_index=quick_config.training.n_points,
                       config=quick_config.simulator)
        stamps = format_timestamps(one.timestamps)
        (tmp_path / f"{seed}.csv").write_text("timestamp,value\n" + "".join(
            f"{t},{v!r}\n" for t, v in zip(stamps, one.values.tolist())))
        quoted = f'"{key}"' if "," in key else key
        rows += [(i, f"{quoted},{t},{v!r}\n") for i, (t, v) in enumerate(zip(stamps, one.values.tolist()))]
    lines = [line for _, line in sorted(rows, key=lambda r: r[0])]
    lines.insert(50, "cpu,2026-01-01 00:00:00,oops\n")
    header = "series,timestamp,value\n"
    (tmp_path / "many.csv").write_text(header + "".join(lines))
    (tmp_path / "a.csv").write_text(header + "".join(lines[:3_001]))
    (tmp_path / "b.csv").write_text(header + "".join(lines[3_001:]))

    def stream(source: str, output: str, *flags: str) -> str:
        result = subprocess.run([sys.executable, str(root / "stream.py"), "--models", str(quick_run), "--source",
                                 source, "--rate", "0", "--no-plot", "--quiet", "--no-refit", "--output", output,
                                 *flags], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stderr

    summary = stream("many.csv", "many.jsonl", "--alerts", "alerts.jsonl", "--quarantine", "q.jsonl")
    assert "3 series" in summary
    records = [json.loads(line) for line in (tmp_path / "many.jsonl").read_text().splitlines()]
    assert [r["series"] for r in records[:3]] == ["cpu", "db,1", "queue"]  # input order
    for key, seed in (("cpu", 41), ("db,1", 42), ("queue", 43)):
        stream(f"{seed}.csv", f"{seed}.jsonl")
        alone = [json.loads(line) for line in (tmp_path / f"{seed}.jsonl").read_text().splitlines()]
        assert [{k: v for k, v in r.items() if k != "series"} for r in records if r["series"] == key] == alone
    incidents = [json.loads(line)["incident"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert incidents and {i["series"] for i in incidents} <= {"cpu", "db,1", "queue"}
    [bad] = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert "oops" in bad["raw"] and bad["position"] == 52

    stream("a.csv", "a.jsonl", "--state", "saved")
    second = stream("b.csv", "b.jsonl", "--state", "saved")
    assert "3 brought back from saved state" in second
    assert (tmp_path / "a.jsonl").read_text() + (tmp_path / "b.jsonl").read_text() == \
        (tmp_path / "many.jsonl").read_text()


def test_many_series_hand_freed_memory_back_to_the_system_at_most_once_a_second(quick_ensemble, three):
    """Series recalibrating again and again free arrays between others: without a hand-back the freed pages stay
    resident (see anomaly.online.heap). A hand-back costs milliseconds at 10,000 series: not more than once a
    second."""
    from anomaly.online import heap

    series, _, _, _ = three
    clock = Clock()
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble), clock=clock)
    assert keyed.heap._hand_back is heap.hand_back
    one = series["cpu"]
    for i in range(10):  # 0.4 s apart: hand-backs at 1.2, 2.4 and 3.6 s
        clock.now = 0.4 * (i + 1)
        part = slice(10 * i, 10 * i + 10)
        keyed.process(Chunk(one.timestamps[part], one.values[part], np.arange(10) + 1, series=["cpu"] * 10))
    assert keyed.heap.handed_back == 3


def test_a_hand_back_gives_the_freed_pages_of_the_heap_back_to_the_system():
    import os
    from pathlib import Path

    from anomaly.online import heap

    status = Path("/proc/self/status")
    if not heap.hand_back() or not status.exists() or os.environ.get("LD_PRELOAD"):
        pytest.skip("no malloc_trim here (not glibc), no /proc to read resident memory from, or another allocator")

    def resident_mb() -> float:
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    # 64 MB in 16 KB arrays (malloc's heap, not mmap), one in eight kept: the freed ones lie between kept ones,
    # where malloc alone never gives them back
    arrays = [np.ones(2048) for _ in range(4096)]
    kept = arrays[::8] + arrays[-1:]
    held = resident_mb()
    del arrays
    before = resident_mb()
    if held - before > 30:
        pytest.skip("the allocator gave the freed arrays back by itself (mmap: MALLOC_MMAP_THRESHOLD_ set low?)")
    assert heap.hand_back()
    assert before - resident_mb() > 30, "the freed 56 MB stayed resident"
    assert all(array.sum() == 2048 for array in kept)  # what is kept is untouched
