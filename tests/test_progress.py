"""Progress displays: drawn on a terminal (a pseudo-terminal here), absent from pipes, clean after Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anomaly import progress

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": "", "TERM": "xterm-256color",
       "COLUMNS": "150", "LINES": "40"}
ENV.pop("ANOMALY_PROGRESS", None)
ENV.pop("NO_COLOR", None)
BAR = "━"  # what rich draws bars with
HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"  # the cursor hidden while a display is up, shown again after it


def on_terminal(args: list[str], cwd: Path, *, interrupt_when: str | None = None, stdout=None,
                timeout: float = 240) -> tuple[int, str]:
    """Run ``python ARGS`` with a pseudo-terminal as its stderr (and stdout, unless given); return its exit
    status and everything it wrote to the terminal. ``interrupt_when``: send SIGINT once this text appeared."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                               stdout=follower if stdout is None else stdout, stderr=follower)
    os.close(follower)
    seen, interrupted, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if interrupt_when and not interrupted and interrupt_when.encode() in seen:
                process.send_signal(signal.SIGINT)
                interrupted = True
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    data = os.read(leader, 1 << 16)
                except OSError:  # the other side closed: everything was read
                    break
                if not data:
                    break
                seen += data
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return process.wait(), seen.decode(errors="replace")


def plain(text: str) -> str:
    """Return terminal output without its escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.fixture(scope="module")
def work(tmp_path_factory, quick_run):
    from anomaly.io.data import format_timestamp
    from anomaly.simulate import simulate

    folder = tmp_path_factory.mktemp("progress")
    series = simulate(40_000, seed=4, anomalies=True, start_index=30_000)
    (folder / "replay.csv").write_text("timestamp,value\n" + "".join(
        f"{format_timestamp(t)},{v:.4f}\n" for t, v in zip(series.timestamps, series.values)))
    return folder


@pytest.mark.slow
def test_training_on_a_terminal_shows_its_stages_and_epochs_and_leaves_the_terminal_clean(tmp_path):
    status, seen = on_terminal([str(ROOT / "train.py"), "--quick", "--models", "models"], tmp_path)
    assert status == 0, seen
    text = plain(seen)
    assert BAR in text and "training" in text
    assert "fitting dense_ae" in text and "epoch 1/" in text  # the stages, and the autoencoder's epochs
    assert re.search(r"left \d+:\d\d:\d\d", text)  # an estimate of the time left
    assert seen.rindex(SHOW) > seen.rindex(HIDE)  # the cursor is back
    assert "saved " in text.split(SHOW)[-1]  # the result comes after the display, on a clean line


@pytest.mark.slow
def test_a_replay_on_a_terminal_shows_points_done_and_their_rate(work, quick_run):
    status, seen = on_terminal([str(ROOT / "stream.py"), "--models", str(quick_run), "--source", "replay.csv",
                                "--rate", "0", "--no-plot", "--output", "out.jsonl", "--no-refit"], work)
    assert status == 0, seen
    text = plain(seen)
    assert re.search(r"streaming replay\.csv .*/40,000 points, [\d,]+/s", text), text[-2000:]
    assert "done: 40000 points seen" in text  # the summary is there, readable
    assert seen.rindex(SHOW) > seen.rindex(HIDE)
    assert sum(1 for _ in open(work / "out.jsonl")) == 40_000


@pytest.mark.slow
def test_ctrl_c_during_a_replay_stops_it_with_a_readable_summary_and_the_cursor_back(work, quick_run):
    status, seen = on_terminal([str(ROOT / "stream.py"), "--models", str(quick_run), "--source", "replay.csv",
                                "--rate", "2000", "--no-plot", "--output", "paced.jsonl", "--no-refit"], work,
                               interrupt_when="/s")  # once the bar shows a rate
    assert status == 130, seen
    assert BAR in seen
    after = seen[seen.rindex(HIDE):]
    assert SHOW in after  # the display closed and gave the cursor back
    text = plain(seen)
    summary = text[text.index("stopped: "):]
    assert re.match(r"stopped: \d+ points seen", summary)
    assert BAR not in plain(after.split(SHOW)[-1])  # nothing of the bars is left after it


@pytest.mark.slow
def test_piped_stdout_holds_only_records_and_no_progress_is_drawn(work, quick_run):
    with open(work / "piped.out", "w+") as stdout:  # stdout a file, stderr still a terminal
        status, seen = on_terminal([str(ROOT / "stream.py"), "--models", str(quick_run), "--source", "replay.csv",
                                    "--rate", "0", "--no-plot", "--output", "-", "--no-refit"], work, stdout=stdout)
        stdout.seek(0)
        records = [json.loads(line) for line in stdout]  # every line is a record
    assert status == 0, seen
    assert len(records) == 40_000
    assert BAR not in seen and HIDE not in seen  # --output -: no display, even with stderr on a terminal
    assert "done: 40000 points seen" in plain(seen)


def test_off_a_terminal_nothing_is_drawn(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--quick", "--models", "models",
                             "--detectors", "zscore,ewma"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("saved ") and result.stdout.count("\n") == 1
    assert "\x1b" not in result.stderr and BAR not in result.stderr


def test_without_a_display_the_reporting_calls_do_nothing():
    assert not progress.active()
    with progress.task("work", total=3) as bar, progress.stage("a stage"):
        bar.advance()
        bar.count(5)
        progress.note("x")
        progress.advance("y")
        assert bar.keras_callbacks(None) == [] and bar.counted() == ""


def test_log_lines_follow_whatever_stderr_is_when_they_are_written(capsys):
    logger = logging.getLogger("anomaly.test_progress")
    handler = progress.ConsoleHandler()
    logger.addHandler(handler)
    try:
        logger.warning("written after the handler was made")  # capsys replaced stderr after it
    finally:
        logger.removeHandler(handler)
    assert "written after the handler was made" in capsys.readouterr().err
