"""End to end as a user runs it: train.py --quick, then stream.py, checked record by record."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anomaly.config import Config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}


def run(*args, cwd, stdin=None, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, input=stdin, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    result = run(str(ROOT / "train.py"), "--quick", "--models", "models", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "saved" in result.stdout and "false-alarm rate" in result.stderr
    return work


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_stream_writes_one_record_per_input_point(trained, suffix):
    out = trained / f"out{suffix}"
    result = run(str(ROOT / "stream.py"), "--models", "models", "--limit", "400", "--rate", "0",
                 "--no-plot", "--output", str(out), cwd=trained)
    assert result.returncode == 0, result.stderr
    if suffix == ".jsonl":
        records = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        with open(out, newline="") as handle:
            records = list(csv.DictReader(handle))
    assert len(records) == 400
    fields = {"timestamp", "value", "score", "p_value", "is_anomaly", "status", "label", "kind",
              *(f"p_{name}" for name in Config().ensemble.detectors)}
    assert all(fields <= set(r) for r in records)
    statuses = [r["status"] for r in records]
    warm = statuses.count("warm-up")
    assert warm > 0 and statuses == ["warm-up"] * warm + ["ok"] * (400 - warm)
    if suffix == ".jsonl":
        assert all(r["is_anomaly"] is False for r in records[:warm])
        assert all(0 <= r["score"] < 1 and 0 < r["p_value"] <= 1 for r in records)
        assert any(r["label"] for r in records)  # the simulator's truth is carried
        assert all((r["score"] >= 0.5) == r["is_anomaly"] for r in records[warm:])
    assert "points seen" in result.stderr and "false-alarm target" in result.stderr
    if any(str(r["is_anomaly"]) == "True" for r in records):
        assert "ANOMALY" in result.stdout and (trained / "anomaly.log").read_text().count("ANOMALY") > 0


@pytest.mark.slow
def test_stdin_garbage_is_quarantined_and_counted(trained):
    lines = ["timestamp,value"] + [f"2026-03-01 00:{m:02d}:00,{50 + m % 3}" for m in range(0, 60, 10)]
    lines += ["not a number", "2026-03-01 02:00:00,abc", "2026-03-01 00:30:00,51", "51.5", ""]
    out, quarantine = trained / "stdin.jsonl", trained / "q.jsonl"
    result = run(str(ROOT / "stream.py"), "--models", "models", "--source", "-", "--no-plot",
                 "--output", str(out), "--quarantine", str(quarantine), cwd=trained,
                 stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    kept = out.read_text().splitlines()
    bad = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert len(kept) + len(bad) == len(lines) - 1  # every line but the header ends somewhere
    reasons = " ".join(b["reason"] for b in bad)
    assert "unparsable" in reasons and "out of order" in reasons and "empty line" in reasons
    assert "rejected" in result.stderr


@pytest.mark.slow
def test_plot_is_rendered_to_png(trained):
    result = run(str(ROOT / "stream.py"), "--models", "models", "--limit", "300", "--rate", "0",
                 "--plot", "live.png", cwd=trained)
    assert result.returncode == 0, result.stderr
    assert (trained / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["stream.py", "--source", "missing.csv", "--no-plot"], "no such file"),
    (["stream.py", "--limit", "-3"], "positive whole number"),
    (["train.py", "--data", "missing.csv"], "no such file"),
    (["train.py", "--target-far", "2"], "fraction"),
])
def test_bad_arguments_exit_non_zero_with_one_line(trained, args, message):
    result = run(str(ROOT / args[0]), *args[1:], "--models", "models", cwd=trained, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1


def test_train_explains_a_too_short_history(tmp_path):
    data = tmp_path / "short.csv"
    data.write_text("timestamp,value\n" + "".join(f"{1700000000 + 60 * i},{i % 7}\n" for i in range(50)))
    result = run(str(ROOT / "train.py"), "--data", str(data), "--models", "m", "--quick", cwd=tmp_path)
    assert result.returncode == 2 and "at least 100 points" in result.stderr


def test_help_explains_sources_and_examples():
    result = run(str(ROOT / "stream.py"), "--help", cwd=ROOT, timeout=60)
    assert result.returncode == 0
    assert "standard input" in result.stdout and "examples:" in result.stdout


@pytest.mark.slow
def test_replay_in_blocks_and_paced_points_write_identical_records(trained):
    from anomaly.io.data import format_timestamp
    from anomaly.simulate import simulate

    series = simulate(500, seed=8, anomalies=True, start_index=30_000)
    data = trained / "replay.csv"
    data.write_text("timestamp,value\n" + "".join(
        f"{format_timestamp(t)},{v:.4f}\n" for t, v in zip(series.timestamps, series.values)))
    outputs = {}
    for rate in ("0", "20000"):  # a whole-file block, then one point per chunk
        result = run(str(ROOT / "stream.py"), "--models", "models", "--source", str(data), "--rate", rate,
                     "--no-plot", "--output", "-", cwd=trained)
        assert result.returncode == 0, result.stderr
        outputs[rate] = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: records only
    assert len(outputs["0"]) == 500
    assert outputs["0"] == outputs["20000"]
    if any(r["is_anomaly"] for r in outputs["0"]):
        assert "ANOMALY" in result.stderr  # with --output -, the messages go to stderr


@pytest.mark.slow
def test_long_replay_writes_every_record_from_the_child_process(trained):
    out = trained / "long.jsonl"
    result = run(str(ROOT / "stream.py"), "--models", "models", "--limit", "60000", "--rate", "0",
                 "--no-plot", "--quiet", "--output", str(out), "--log", "long.log", cwd=trained)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 60000
    flagged = sum('"is_anomaly": true' in line for line in lines)
    log = (trained / "long.log").read_text()
    opened, closed = log.count("ANOMALY"), log.count("RESOLVED")
    assert 0 < opened == closed < flagged  # incidents, not one line per flagged point
    assert "60000 points seen" in result.stderr and f"{opened} incidents" in result.stderr


def test_rate_paces_stdin_one_point_at_a_time(trained):
    lines = ["timestamp,value"] + [f"2026-03-01 00:{m:02d}:00,{50 + m % 3}" for m in range(20)]
    result = run(str(ROOT / "stream.py"), "--models", "models", "--source", "-", "--rate", "40", "--no-plot",
                 "--quiet", cwd=trained, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    seconds = float(re.search(r"20 input lines in ([\d.]+) s", result.stderr).group(1))
    assert seconds >= 19 / 40 * 0.9  # 20 points at 40 per second: paced, not read in one go


@pytest.mark.slow
def test_a_closed_output_pipe_stops_the_stream_quietly(trained):
    process = subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", "models", "--rate", "0",
                                "--limit", "200000", "--no-plot", "--quiet", "--output", "-"],
                               cwd=trained, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(process.stdout.readline())["status"] == "warm-up"
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert "output was closed" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("rows,message", [
    (["when,value"] + [f"{i},{i}" for i in range(300)], "no column 'timestamp'"),
])
def test_train_explains_what_is_wrong_with_the_history(tmp_path, rows, message):
    data = tmp_path / "history.csv"
    header = [] if rows[0].startswith("when") else ["timestamp,value"]
    data.write_text("\n".join(header + rows) + "\n")
    result = run(str(ROOT / "train.py"), "--data", str(data), "--models", "m", "--quick", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").glob("run-*"))


@pytest.mark.slow
def test_tcp_server_answers_every_line_of_several_clients(trained):
    server = subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", "models", "--source", "tcp://:0",
                               "--no-plot", "--quiet", "--output", "tcp.jsonl", "--quarantine", "tcp-q.jsonl"],
                              cwd=trained, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        address = None
        while address is None:
            line = server.stderr.readline()
            assert line, "the server ended before listening"
            address = (re.search(r"listening on (tcp://\S+);", line) or [None, None])[1]
        good = [f"2026-03-01 {h:02d}:{m:02d}:00,{50 + (h * 60 + m) % 7}" for h in range(5) for m in range(0, 60, 10)]
        data = trained / "client.csv"
        data.write_text("timestamp,value\n" + "\n".join(good[:20] + ["oops", good[5]] + good[20:]) + "\n")
        clients = [subprocess.Popen([sys.executable, "-m", "anomaly.client", address, "--source", str(data),
                                     "--output", f"replies{i}.jsonl", "--quiet"], cwd=trained, env=ENV,
                                    stderr=subprocess.PIPE, text=True) for i in range(2)]
        for client in clients:
            assert client.wait(timeout=120) == 0, client.stderr.read()
        for i in range(2):  # one reply per data line, in order, for each client
            replies = [json.loads(line) for line in (trained / f"replies{i}.jsonl").read_text().splitlines()]
            assert len(replies) == len(good) + 2
            assert replies[20]["rejected"].startswith("unparsable") and replies[21]["rejected"] == "timestamp out of order"
            assert [r["timestamp"] for r in replies if "timestamp" in r] == [g.split(",")[0] for g in good]
    finally:
        server.send_signal(signal.SIGINT)
        stderr = server.stderr.read()
        server.wait(timeout=60)
    assert f"{2 * len(good)} points seen" in stderr and "4 input lines rejected" in stderr
    assert len((trained / "tcp.jsonl").read_text().splitlines()) == 2 * len(good)
    assert len((trained / "tcp-q.jsonl").read_text().splitlines()) == 4


def test_tcp_source_refuses_a_malformed_address(trained):
    result = run(str(ROOT / "stream.py"), "--models", "models", "--source", "tcp://localhost", "--no-plot",
                 cwd=trained, timeout=120)
    assert result.returncode == 2 and "tcp://HOST:PORT" in result.stderr


@pytest.mark.slow
def test_incidents_reach_the_log_the_jsonl_file_and_a_webhook(trained):
    from test_alerts import Receiver

    receiver = Receiver()
    try:
        result = run(str(ROOT / "stream.py"), "--models", "models", "--limit", "3000", "--rate", "0", "--no-plot",
                     "--alerts", "incidents.jsonl", "--alert-webhook", receiver.url, "--log", "inc.log", cwd=trained)
    finally:
        receiver.stop()
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (trained / "incidents.jsonl").read_text().splitlines()]
    incidents = int(re.search(r"(\d+) incidents", result.stderr).group(1))
    assert incidents > 0 and len(events) == 2 * incidents
    assert [e["event"] for e in events].count("opened") == incidents == [e["event"] for e in events].count("closed")
    assert receiver.bodies == events  # the webhook got exactly what the file holds
    log = (trained / "inc.log").read_text()
    assert log.count("ANOMALY") == incidents == log.count("RESOLVED") == result.stdout.count("ANOMALY")
    assert f"webhook: {2 * incidents} alerts delivered, 0 not delivered" in result.stderr
