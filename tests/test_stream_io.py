"""Input and output in blocks: the same answers as line by line, and every line accounted for."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.io.data import number, parse_timestamp
from anomaly.io.parse import line_fields, parse_csv_lines
from anomaly.io.records import Chunk, DecisionBlock
from anomaly.io.sinks import OutputSink, record
from anomaly.io.sources import arriving_lines, csv_chunks, limited
from anomaly.model.windows import TimeGrid
from anomaly.online.runner import Runner
from anomaly.simulate import Point

GOOD_STAMPS = st.sampled_from([
    "2026-03-01 00:10:00", "2026-03-01T00:20:00", "2024-02-29 23:59:59", "1767225900", "1767225900000",
    "2026-03-01T00:30:00Z", "2026-03-01 01:40:00+01:00", "2026-03-01 00:50:00.5"])
BAD_STAMPS = st.sampled_from(["2026-02-30 00:00:00", "2026-03-01 24:00:00", "0000-01-01 00:00:00",
                              "yesterday", "", "NaT", "now", "nan", "2026-13-01 00:00:00"])
VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
                   st.sampled_from(["1_000", " 2 ", "nan", "inf", "-0", "abc", "", "0x10", "1e5"]))
LINES = st.one_of(
    st.tuples(st.one_of(GOOD_STAMPS, BAD_STAMPS), VALUES).map(",".join),
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=30),
    st.sampled_from(['"2026-03-01 00:10:00","5"', "2026-03-01 00:10:00,5,extra", ","]))


def one_line(line: str) -> tuple[float, float] | None:
    """The per-line rules the block parser must agree with: (timestamp, value) or None."""
    fields = line_fields(line)
    if isinstance(fields, str) or len(fields) != 2:
        return None
    try:
        return parse_timestamp(fields[0]), number(fields[1].strip())
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=40), st.booleans())
def test_block_parser_agrees_with_the_line_rules_and_loses_nothing(lines, uniform):
    if uniform:  # a clean block of one layout takes the vectorised routes
        lines = [f"2026-03-01 00:{i % 60:02d}:00,{i}.5" for i in range(len(lines))]
    chunk = parse_csv_lines(lines, 2, 2, 0, 1)
    positions = sorted([*chunk.positions.tolist(), *(r.position for r in chunk.rejected)])
    assert positions == list(range(2, 2 + len(lines)))  # every line ends exactly once
    accepted = dict(zip(chunk.positions.tolist(), zip(chunk.timestamps.tolist(), chunk.values.tolist())))
    for position, line in enumerate(lines, start=2):
        expected = one_line(line)
        if expected is None:
            assert position not in accepted, line
        else:
            got = accepted[position]
            assert got[0] == expected[0] and (got[1] == expected[1] or (math.isnan(got[1]) and math.isnan(expected[1])))
    assert all(r.raw == lines[r.position - 2] and r.reason for r in chunk.rejected)


STAMP_OR_BAD = st.one_of(st.integers(0, 30).map(float), st.sampled_from([math.nan, math.inf]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(STAMP_OR_BAD, st.sampled_from([1.0, math.nan, -math.inf])), max_size=30),
       st.integers(1, 7))
def test_block_validation_equals_point_by_point_checks(pairs, split):
    stamps = np.array([p[0] for p in pairs])
    values = np.array([p[1] for p in pairs])
    one = Runner.__new__(Runner)  # validation needs no ensemble
    one._last_timestamp, one.counts = -math.inf, None
    expected = [one.check(Point(t, v), i + 1) for i, (t, v) in enumerate(pairs)]
    block = Runner.__new__(Runner)
    block._last_timestamp = -math.inf
    reasons = []
    for start in range(0, len(pairs), split):  # chunk boundaries anywhere
        valid, why = block._validate(stamps[start:start + split], values[start:start + split])
        reasons += [None if ok else reason for ok, reason in zip(valid, why)]
    assert reasons == [None if r is None else r.reason for r in expected]


def test_csv_source_numbers_lines_and_handles_bom_and_missing_newline(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufefftimestamp,value\n2026-03-01 00:00:00,1\n\n2026-03-01 00:10:00,x\n"
                     "2026-03-01 00:20:00,3".encode())
    chunks = list(csv_chunks(path, chunk_bytes=16))  # tiny chunks: lines cut across reads
    points = [(int(p), v) for c in chunks for p, v in zip(c.positions, c.values)]
    rejected = {r.position: r.reason for c in chunks for r in c.rejected}
    assert points == [(2, 1.0), (5, 3.0)]
    assert rejected[3] == "empty line" and "not a number" in rejected[4]
    with pytest.raises(ValueError, match="no column 'load'"):
        csv_chunks(path, value_column="load")


def test_limit_keeps_exactly_the_first_items_in_input_order(tmp_path):
    path = tmp_path / "m.csv"
    rows = [f"2026-03-01 00:{i:02d}:00,{i}" if i % 4 else "garbage" for i in range(40)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    kept = list(limited(csv_chunks(path), 13))
    positions = sorted([p for c in kept for p in c.positions.tolist()] + [r.position for c in kept for r in c.rejected])
    assert positions == list(range(2, 15))


def test_arriving_lines_come_one_by_one_when_slow_and_together_when_queued():
    read, write = os.pipe()

    def feed():
        os.write(write, b"a\nb\nc")
        time.sleep(0.2)
        os.write(write, b"d\n")
        time.sleep(0.2)
        os.write(write, b"".join(b"%d\n" % i for i in range(10)) + b"tail")
        os.close(write)

    threading.Thread(target=feed).start()
    batches = list(arriving_lines(read, most=4))
    os.close(read)
    assert batches == [["a", "b"], ["cd"], ["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"], ["tail"]]


def make_block(n: int = 40, truth: bool = True) -> DecisionBlock:
    rng = np.random.default_rng(0)
    return DecisionBlock(
        ["dense_ae", "shesd"], 1e-3, 1767225600 + 600.0 * np.arange(n) + 0.25, 50 * rng.normal(size=n),
        rng.random(n), rng.random(n) ** 9, rng.random(n) < 0.3, rng.random((n, 2)) ** 4, np.arange(n) < 5,
        np.where(np.arange(n) < 5, np.nan, rng.normal(size=n)), rng.random(n), np.arange(1, n + 1),
        [None if i % 7 == 0 else bool(i % 2) for i in range(n)] if truth else None,
        ["spike" if i % 2 else "" for i in range(n)] if truth else None)


@pytest.mark.parametrize("truth", [True, False])
def test_block_output_equals_one_record_per_decision(tmp_path, truth):
    block = make_block(truth=truth)
    for suffix in (".jsonl", ".csv"):
        path = tmp_path / f"out{suffix}"
        sink = OutputSink(path)
        sink.write_block(block)
        sink.close()
        expected = [record(block.decision(i)) for i in range(len(block))]
        if suffix == ".jsonl":
            assert [json.loads(line) for line in path.read_text().splitlines()] == expected
        else:
            buffer = io.StringIO()
            fields = list(record(block.decision(1)))
            writer = csv.DictWriter(buffer, fieldnames=fields + [f for f in ("label", "kind") if f not in fields],
                                    restval="")
            writer.writeheader()
            writer.writerows(expected)
            with open(path, newline="") as handle:
                assert list(csv.DictReader(handle)) == list(csv.DictReader(io.StringIO(buffer.getvalue())))


def test_chunks_concatenate_in_order_with_unknown_labels_as_none():
    a = Chunk(np.array([1.0]), np.array([5.0]), np.array([1]), ["1,5"], [True], ["spike"])
    b = Chunk(np.array([2.0]), np.array([6.0]), np.array([2]), None)
    joined = Chunk.concat([a, b])
    assert joined.labels == [True, None] and joined.kinds == ["spike", ""]
    assert joined.raw == ["1,5", "2.0,6.0"] and joined.positions.tolist() == [1, 2]


def test_sinks_in_a_child_process_write_what_in_process_sinks_write(tmp_path):
    from anomaly.io.sink_process import SinkProcess, make_sinks

    blocks = [make_block(40), make_block(25, truth=False)]
    here = [("output", str(tmp_path / "here.jsonl"))]
    there = [("output", str(tmp_path / "there.jsonl"))]
    sinks = make_sinks(here)
    child = SinkProcess(there)
    for block in blocks:
        child.write_block(block)
        for sink in sinks:
            sink.write_block(block)
    child.close()  # waits until the child has written everything
    for sink in sinks:
        sink.close()
    assert (tmp_path / "there.jsonl").read_text() == (tmp_path / "here.jsonl").read_text()
    assert len((tmp_path / "here.jsonl").read_text().splitlines()) == 65


def test_a_failing_child_process_is_reported(tmp_path):
    from anomaly.io.sink_process import SinkProcess

    child = SinkProcess([("output", str(tmp_path / "missing-folder" / "out.jsonl"))])
    with pytest.raises(OSError, match="output process"):
        for _ in range(50):  # the child dies opening the file; sending fails or closing reports it
            child.write_block(make_block(40))
        child.close()


def test_rejects_reach_the_quarantine_in_input_order():
    from anomaly.online.runner import Runner

    runner = Runner(SimpleNamespace(window=3, grid=TimeGrid(parse_timestamp("2026-03-01"), 600.0)))
    runner._score = lambda chunk: chunk  # validation and accounting only: no model needed
    runner._records = lambda block: None
    lines = ["2026-03-01 00:10:00,1", "2026-03-01 00:20:00,2", "garbage", "2026-03-01 00:05:00,3",
             "2026-03-01 00:30:00,x", "2026-03-01 00:30:00,nan"]
    _, rejected = runner.process(parse_csv_lines(lines, 2, 2, 0, 1))
    assert [r.position for r in rejected] == [4, 5, 6, 7]
    assert runner.counts.rejected == 4


def test_a_too_long_line_is_rejected_with_its_start_kept():
    from anomaly.io.parse import MAX_LINE, parse_line

    line = "2026-03-01 00:10:00," + "9" * (MAX_LINE + 10)
    chunk = parse_csv_lines([line, "2026-03-01 00:20:00,2"], 2, 2, 0, 1)
    assert len(chunk) == 1 and chunk.rejected[0].reason.startswith("line too long")
    assert len(chunk.rejected[0].raw) < 300
    assert parse_line(line, 1, 0.0, 60.0).reason.startswith("line too long")


def test_limit_zero_yields_nothing(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("timestamp,value\n2026-03-01 00:10:00,1\n")
    assert list(limited(csv_chunks(path), 0)) == []
