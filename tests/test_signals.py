"""Ctrl-C and SIGTERM stop a stream cleanly (issue 14): every line read is written or quarantined, the summary
is printed, children are stopped, and the exit status says which signal it was."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_hostile_input import normal_lines

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}


def start(models, cwd, *args, stdin=None):
    return subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", str(models), "--no-plot",
                             "--quiet", "--output", "out.jsonl", "--quarantine", "q.jsonl", *args],
                            cwd=cwd, env=ENV, stdin=stdin, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal gives it


def wait_for(process, pattern: str) -> str:
    """Read stderr until a line matches ``pattern``; return what was read."""
    seen = ""
    while not re.search(pattern, seen):
        line = process.stderr.readline()
        assert line, f"ended before {pattern!r}: {seen}"
        seen += line
    return seen


def lines_read(stderr: str) -> int:
    return int(re.search(r"(\d+) input lines in", stderr)[1])


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, to_group", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)])
def test_a_signal_during_a_long_replay_loses_no_record(quick_run, tmp_path, signum, status, to_group):
    lines = normal_lines(300_000)
    for i in range(1000, len(lines), 25_000):
        lines[i] = "garbage"
    (tmp_path / "in.csv").write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    process = start(quick_run, tmp_path, "--source", "in.csv", "--rate", "0")
    wait_for(process, "streaming")
    time.sleep(3.0)
    if to_group:  # Ctrl-C in a terminal reaches every process of the group: the output process too
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == status, stderr
    assert "Traceback" not in stderr and "stopped" in stderr
    read = lines_read(stderr)
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    written = sum(r["status"] != "filled" for r in records)  # points made up to fill a gap are not input
    quarantined = (tmp_path / "q.jsonl").read_text().splitlines()
    assert 0 < read < len(lines)  # it was stopped part way
    assert written + len(quarantined) == read


@pytest.mark.slow
def test_sigterm_while_a_refit_trains_stops_it_and_leaves_no_process_behind(quick_run, tmp_path):
    lines = normal_lines(40_000)
    shifted = [f"{line.split(',')[0]},{float(line.split(',')[1]) + (30 if i >= 3000 else 0)}"
               for i, line in enumerate(lines)]  # a lasting shift: drift, then a refit in the background
    process = start(quick_run, tmp_path, "--source", "-", stdin=subprocess.PIPE)

    def feed():
        try:
            for i in range(0, len(shifted), 500):
                process.stdin.write("\n".join(shifted[i:i + 500]) + "\n")
                process.stdin.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ValueError):
            pass

    threading.Thread(target=feed, daemon=True).start()
    wait_for(process, "refit: retraining")
    time.sleep(0.5)
    children = subprocess.run(["ps", "--ppid", str(process.pid), "-o", "pid="], capture_output=True,
                              text=True).stdout.split()
    assert children  # the refit's process (and multiprocessing's resource tracker)
    process.send_signal(signal.SIGTERM)
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 143
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr and "still training at the end" in stderr
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    written = len((tmp_path / "out.jsonl").read_text().splitlines())
    assert written == lines_read(stderr)


@pytest.mark.slow
def test_sigterm_during_training_leaves_no_staging_folder(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--models", "models"], cwd=tmp_path,
                               env=ENV, stderr=subprocess.PIPE, text=True)
    wait_for(process, "training on")
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 143 and "interrupted; models/ is unchanged" in stderr
    assert not list((tmp_path / "models").glob(".tmp-*")) and not list((tmp_path / "models").glob("run-*"))
