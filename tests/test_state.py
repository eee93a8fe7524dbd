"""A stream's online state survives a stop: snapshot, restore, and the records go on exactly as without the stop."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomaly.io.alarms import AlarmFilter
from anomaly.io.records import Chunk
from anomaly.online.runner import Runner
from anomaly.online.state import MAGIC, SnapshotError, pack, peek, unpack
from anomaly.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
CUT = 5_300  # where the stream stops and starts again: between two adaptation boundaries


@pytest.fixture(scope="module")
def stream(quick_config):
    """A simulated stream with anomalies, three points missing right at the cut (a gap to fill after the restart)."""
    series = simulate(14_000, seed=21, anomalies=True, start_index=quick_config.training.n_points,
                      config=quick_config.simulator)
    keep = np.ones(len(series.values), dtype=bool)
    keep[CUT:CUT + 3] = False
    return series.timestamps[keep], series.values[keep]


def feed(runner: Runner, alarms: AlarmFilter, timestamps, values, offset: int = 0, sizes=(1, 7, 1000, 333)):
    """Stream the points in chunks of varying size; return the decisions' columns and the incidents' events."""
    out, events, i, turn = [], [], 0, 0
    while i < len(values):
        size = sizes[turn % len(sizes)]
        turn += 1
        chunk = Chunk(timestamps[i:i + size], values[i:i + size], np.arange(i, i + len(values[i:i + size])) + 1 + offset)
        block, rejected = runner.process(chunk)
        assert not rejected
        out.append(np.column_stack([block.timestamps, block.score, block.p_value, block.is_anomaly, block.p_detectors]))
        events += [(e.kind, e.incident.id, e.incident.start, e.incident.flagged) for e in alarms.update(block)]
        i += size
    return np.concatenate(out), events


def test_a_restored_stream_goes_on_exactly_where_it_stopped(quick_ensemble, quick_config, stream):
    timestamps, values = stream
    whole = Runner(quick_ensemble, adapt=quick_config.adapt)
    expected, expected_events = feed(whole, AlarmFilter(cooldown=16), timestamps, values)

    first, alarms = Runner(quick_ensemble, adapt=quick_config.adapt), AlarmFilter(cooldown=16)
    before, events = feed(first, alarms, timestamps[:CUT], values[:CUT])
    blob = first.snapshot(extra={"alarms": alarms.state()}, meta={"run": "a-run"})
    del first

    again, alarms_again = Runner(quick_ensemble, adapt=quick_config.adapt), AlarmFilter(cooldown=16)
    extra, meta = again.restore(blob)
    alarms_again.load_state(*extra["alarms"])
    assert meta["run"] == "a-run"
    recalibrated_before = again.adapter.recalibrations
    after, more_events = feed(again, alarms_again, timestamps[CUT:], values[CUT:], offset=CUT, sizes=(500, 3))

    assert again.adapter.recalibrations > recalibrated_before  # the restored calibration kept adapting
    assert again.counts.filled == whole.counts.filled == 3  # the gap at the cut was filled from the saved last point
    assert again.counts.points == whole.counts.points and again.counts.anomalies == whole.counts.anomalies
    np.testing.assert_array_equal(np.concatenate([before, after]), expected)
    assert expected_events and events + more_events == expected_events  # incidents too: numbers, starts, sizes


def test_a_snapshot_is_numpy_arrays_and_json_never_a_pickle(quick_ensemble, quick_config, stream):
    runner = Runner(quick_ensemble, adapt=quick_config.adapt)
    feed(runner, AlarmFilter(), *[column[:3000] for column in stream])
    blob = runner.snapshot()
    assert blob.startswith(MAGIC) and b"pickle" not in blob[:200]
    header = json.loads(blob[len(MAGIC) + 8:len(MAGIC) + 8 + int.from_bytes(blob[len(MAGIC):len(MAGIC) + 8], "little")])
    assert header["arrays"] and all(not np.dtype(dtype).hasobject for _, dtype, *_ in header["arrays"])
    assert len(blob) < 8 << 20
    with pytest.raises(TypeError, match="Python objects"):
        pack({"bad": ({"x": np.array([{}], dtype=object)}, {})})


def test_a_snapshot_saved_as_an_npz_archive_by_an_earlier_version_is_still_read(quick_ensemble, quick_config,
                                                                                  stream):
    runner = Runner(quick_ensemble, adapt=quick_config.adapt)
    feed(runner, AlarmFilter(), *[column[:2000] for column in stream])
    parts, meta = unpack(runner.snapshot())
    arrays = {f"{name}.{key}": value for name, (part, _) in parts.items() for key, value in part.items()}
    document = {**meta, "parts": {name: part_meta for name, (_, part_meta) in parts.items()}}
    arrays["meta.json"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # the format before 2026-11-29
    again = Runner(quick_ensemble, adapt=quick_config.adapt)
    again.restore(buffer.getvalue())
    assert again.counts == runner.counts and peek(buffer.getvalue())["detectors"] == quick_ensemble.names


def test_a_snapshot_that_does_not_fit_is_refused_with_a_reason(quick_ensemble, quick_config, stream):
    runner = Runner(quick_ensemble, adapt=quick_config.adapt)
    feed(runner, AlarmFilter(), *[column[:2000] for column in stream])
    blob = runner.snapshot()
    with pytest.raises(SnapshotError, match="adaptation on"):
        Runner(quick_ensemble).restore(blob)
    parts, meta = unpack(blob)
    with pytest.raises(SnapshotError, match="detectors"):
        Runner(quick_ensemble, adapt=quick_config.adapt).restore(pack(parts, {**meta, "detectors": ["other"]}))
    with pytest.raises(SnapshotError, match="format"):
        unpack(pack(parts, {**meta, "format": 0}))
    with pytest.raises(SnapshotError, match="not a stream snapshot"):
        Runner(quick_ensemble, adapt=quick_config.adapt).restore(b"PK\x03\x04 not really")
    del parts["kept"]
    with pytest.raises(SnapshotError, match="incomplete"):
        Runner(quick_ensemble, adapt=quick_config.adapt).restore(pack(parts, meta))


def test_stream_py_with_state_stops_and_goes_on_as_if_it_never_stopped(quick_run, quick_config, tmp_path):
    """The CLI: a file streamed in two parts with --state DIR gives the records of one uninterrupted run,
    and the incidents split across the restart add up to the uninterrupted run's."""
    from anomaly.io.sinks import format_timestamps

    series = simulate(6_000, seed=4, anomalies=True, start_index=quick_config.training.n_points,
                      config=quick_config.simulator)
    rows = [f"{t},{v!r}\n" for t, v in zip(format_timestamps(series.timestamps), series.values.tolist())]
    for name, part in (("full", rows), ("a", rows[:3_700]), ("b", rows[3_700:])):
        (tmp_path / f"{name}.csv").write_text("timestamp,value\n" + "".join(part))

    def stream(name: str, *flags: str) -> str:
        result = subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(quick_run),
                                 "--source", f"{name}.csv", "--rate", "0", "--no-plot", "--quiet",
                                 "--output", f"{name}.jsonl", *flags],
                                cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stderr

    whole = stream("full")
    first = stream("a", "--state", "saved")
    assert (tmp_path / "saved" / "stream.state").is_file() and "state saved" in first
    second = stream("b", "--state", "saved")
    assert "resumed from saved: 3,700 points seen before" in second
    records = (tmp_path / "a.jsonl").read_text() + (tmp_path / "b.jsonl").read_text()
    assert records == (tmp_path / "full.jsonl").read_text()
    incidents = int(re.search(r"(\d+) incidents", whole)[1])
    assert incidents > 0
    assert int(re.search(r"(\d+) incidents", first)[1]) + int(re.search(r"(\d+) incidents", second)[1]) == incidents
    assert re.search(rf"since the state began: 6,000 points, .*, {incidents} incidents", second)
