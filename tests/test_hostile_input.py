"""Hostile input (issue 14): one parser for every source, that never raises, and a stream that survives it all.

Each test is named after the behaviour that failed before: a lone carriage return killed
stdin, a 200 KB quoted field or deep JSON killed the TCP server, one line stamped 9999-12-31
sent every later line to quarantine, and values of 1e308 were called normal.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.io.data import format_timestamp
from anomaly.io.parse import parse_csv_lines, parse_line
from anomaly.io.records import Chunk, Rejected
from anomaly.io.sources import LineReader, LineSplitter, read_csv
from anomaly.online.runner import Runner
from anomaly.simulate import Point, simulate

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}

HOSTILE = [
    "2026-03-01 00:00:00,50\r1",  # a lone carriage return
    '2026-03-01 00:00:00,"' + "7" * 200_000 + '"',  # a 200 KB quoted field
    '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}",  # JSON nested 100,000 deep
    '{"value": 1' + "0" * 400 + "}",  # an integer too large for a float
    "2026-03-01 00:00:00,1_000", "2026-03-01 00:00:00,\u0663", '{"value": true}',  # not plain numbers
    "1e300,5", "\x00\x00", "\xff\xfe", '"unclosed,5', "{", "[]", "{}", '{"value": {}}',
]


def normal_lines(n: int, start_index: int = 20_000) -> list[str]:
    """``n`` simulated normal ``timestamp,value`` lines on the default grid."""
    series = simulate(n, seed=4, start_index=start_index)
    return [f"{format_timestamp(t)},{v:.5f}" for t, v in zip(series.timestamps, series.values)]


def stream(models, *args, cwd, stdin=None):
    return subprocess.run([sys.executable, str(ROOT / "stream.py"), "--models", str(models), "--no-plot", "--quiet",
                           *args], cwd=cwd, env=ENV, input=stdin, text=True, capture_output=True, timeout=300)


def records_and_quarantine(work: Path) -> tuple[list[dict], list[dict]]:
    out = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    bad = [json.loads(line) for line in (work / "q.jsonl").read_text().splitlines()]
    return out, bad


def mixed_lines() -> list[str]:
    """Normal lines with every hostile line spread among them."""
    lines = normal_lines(300)
    for i, line in enumerate(HOSTILE):
        lines.insert(40 + 15 * i, line)
    return lines


# ---------------------------------------------------------------- the parser itself
PIECES = st.sampled_from(['{', '}', '[', ']', '"', ',', '\r', '\ufeff', ':', '"value"', '"timestamp"', 'true',
                          'null', '1_000', '\u0663', '1e308', '1e999', 'nan', '-', '.', 'e', '2026-01-01 00:00:00',
                          '9999-12-31', '0' * 50, ' ', '\x00', '\\', 'T', 'Z', '+01:00', '\U0001f600'])
TEXT = st.one_of(st.text(max_size=60), st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=12).map("".join))


@pytest.mark.slow
@settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(TEXT, min_size=50, max_size=50), st.binary(max_size=200))
def test_the_parser_turns_any_text_into_points_or_rejections_without_raising(lines, data):
    # 500 examples of 50 lines: 25,000 lines through each entry point, and arbitrary bytes through the splitter;
    # new ones every run (no example database), so the suite's runs together cover far more
    reader = LineReader(60.0, 0.0)
    for position, line in enumerate(lines, start=1):
        assert isinstance(parse_line(line, position, 0.0, 60.0), (Point, Rejected))
    chunk = reader.chunk(lines)
    assert chunk is None or len(chunk) + len(chunk.rejected) <= len(lines)
    block = parse_csv_lines(lines, 2, 2, 0, 1)
    ended = sorted([*block.positions.tolist(), *(r.position for r in block.rejected)])
    assert ended == list(range(2, 52))  # every line exactly once
    splitter = LineSplitter()
    for line in splitter.feed(data) + splitter.end():
        assert isinstance(parse_line(line, 1, 0.0, 60.0), (Point, Rejected))


@pytest.mark.parametrize("line", HOSTILE)
def test_every_hostile_line_is_a_rejection_with_a_short_reason_in_both_parsers(line):
    one = parse_line(line, 7, 0.0, 60.0)
    assert isinstance(one, Rejected) or not math.isfinite(one.value)  # 1e400 is read, then rejected as non-finite
    block = parse_csv_lines([line], 7, 2, 0, 1)
    assert len(block) == 0 or not np.isfinite(block.values).all()
    for rejected in [one, *block.rejected]:
        if isinstance(rejected, Rejected):
            assert rejected.position == 7 and 0 < len(rejected.reason) < 200


def test_numbers_are_plain_decimal_or_exponent_forms_only():
    assert parse_line("2026-03-01 00:00:00,-1.5e-3", 1, 0, 60).value == -1.5e-3
    for text in ("1_000", "\u0663", "\u0661\u0660", "0x10", "1,5"):
        assert isinstance(parse_line(f"2026-03-01 00:00:00,{text},", 1, 0, 60), Rejected), text
        assert isinstance(parse_line(json.dumps({"value": text}), 1, 0, 60), Rejected), text
    for value in ("true", "false", "null", "[1]", '{"a": 1}'):
        assert isinstance(parse_line('{"value": %s}' % value, 1, 0, 60), Rejected), value


def test_impossible_timestamps_are_rejected_never_written_as_text():
    for stamp in ("1e300", "-1e300", "0000-01-01 00:00:00", "9999-12-31T23:59:59-05:00", "1e17"):
        rejected = parse_line(f"{stamp},5", 3, 0, 60)
        assert isinstance(rejected, Rejected) and "timestamp" in rejected.reason, stamp
    block = parse_csv_lines(["1e300,5", "1767225600,5"], 2, 2, 0, 1)
    assert block.positions.tolist() == [3] and "out of range" in block.rejected[0].reason


def test_a_carriage_return_inside_a_csv_file_line_is_one_rejected_line(tmp_path):
    from anomaly.io.sources import csv_chunks

    path = tmp_path / "cr.csv"
    path.write_bytes(b"timestamp,value\r\n2026-03-01 00:00:00,1\r\n2026-03-01 00:10:00,12\r34\r\n"
                     b"2026-03-01 00:20:00,3\r\n")
    for chunk_bytes in (0, 7, 1 << 20):
        chunks = list(csv_chunks(path, chunk_bytes=chunk_bytes))
        values = [v for c in chunks for v in c.values.tolist()]
        rejected = [(r.position, r.reason) for c in chunks for r in c.rejected]
        assert values == [1.0, 3.0] and rejected == [(3, "carriage return inside the line")], chunk_bytes


def test_train_reads_a_csv_with_a_byte_order_mark_as_stream_does(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufefftimestamp,value\r\n" + "\r\n".join(normal_lines(150)) + "\r\n2026-01-01 00:00:00,1_000\r\n")
    history = read_csv(path)
    assert len(history.values) == 150 and history.skipped == 1 and "unparsable" in history.reasons


# ---------------------------------------------------------------- the runner
def test_one_line_far_in_the_future_is_quarantined_and_the_stream_goes_on(quick_ensemble):
    lines = normal_lines(300)
    lines.insert(100, "9999-12-31 23:59:59,50")
    runner = Runner(quick_ensemble, future_horizon=86_400)
    block, rejected = runner.process(parse_csv_lines(lines, 2, 2, 0, 1))
    assert [(r.position, r.reason) for r in rejected] == [(102, "timestamp in the future")]
    assert len(block) == 300


def test_a_clock_that_really_jumps_is_followed_after_three_points(quick_ensemble):
    runner = Runner(quick_ensemble, future_horizon=86_400, wall_clock=lambda: 1_767_225_600.0)
    stamps = 1_767_225_600.0 + np.concatenate([np.arange(50) * 600, 30 * 86_400 + np.arange(50) * 600])
    verdicts = []
    for t in stamps:  # one point per chunk, as a live source delivers them
        _, rejected = runner.process(Chunk(np.array([t]), np.array([1.0]), np.array([1])))
        verdicts.append(rejected[0].reason if rejected else "ok")
    assert verdicts[:50] == ["ok"] * 50
    assert verdicts[50:52] == ["timestamp in the future"] * 2 and verdicts[52:] == ["ok"] * 48


def test_values_far_beyond_the_scalers_range_are_flagged_not_given_p_one(quick_ensemble):
    series = simulate(400, seed=3, start_index=20_000)
    for huge in (1e308, -1e308, 1e12):
        values = series.values.copy()
        values[300:340] = huge
        block, _ = Runner(quick_ensemble).process(Chunk(series.timestamps, values, np.arange(1, 401)))
        assert block.is_anomaly[300:340].all() and (block.p_value[300:340] < 1e-100).all(), huge
        assert not block.is_anomaly[quick_ensemble.window:300].any()


# ---------------------------------------------------------------- end to end: every line ends exactly once
@pytest.mark.slow
@pytest.mark.parametrize("source", ["file", "stdin"])
def test_hostile_lines_never_stop_a_stream_and_every_line_ends_once(quick_run, tmp_path, source):
    lines = mixed_lines()
    text = "timestamp,value\n" + "\n".join(lines) + "\n"
    if source == "file":
        (tmp_path / "in.csv").write_text(text)
        result = stream(quick_run, "--source", "in.csv", "--output", "out.jsonl", "--quarantine", "q.jsonl",
                        cwd=tmp_path)
    else:
        result = stream(quick_run, "--source", "-", "--output", "out.jsonl", "--quarantine", "q.jsonl",
                        cwd=tmp_path, stdin=text)
    assert result.returncode == 0, result.stderr
    out, bad = records_and_quarantine(tmp_path)
    assert len(out) + len(bad) == len(lines)
    assert len(out) == 300 and len(bad) == len(HOSTILE)
    assert all("Na" not in record["timestamp"] for record in out)
