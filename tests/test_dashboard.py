"""The dashboard: its board (what it keeps), its JSON API (the app's test client), and the page in a real
browser (Debian's Chromium through Selenium and the system chromedriver)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from anomaly.dashboard import Board, parse_address  # noqa: E402
from anomaly.dashboard.app import create_app  # noqa: E402
from anomaly.io.alarms import AlarmFilter  # noqa: E402
from anomaly.io.records import Chunk  # noqa: E402
from anomaly.online.keyed import KeyedRunners, in_input_order  # noqa: E402
from anomaly.online.runner import Runner  # noqa: E402
from anomaly.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def board(quick_ensemble):
    """A board fed as stream.py feeds it: three interleaved series, one with a burst of spikes at its end."""
    board = Board(points=500, alpha=quick_ensemble.alpha)
    keyed = KeyedRunners(lambda key: Runner(quick_ensemble), lambda key: AlarmFilter(cooldown=16, series=key))
    series = {key: simulate(1500, seed=30 + k, start_index=30_000) for k, key in enumerate(["api", "db", "web"])}
    series["web"].values[-3:] += 60.0  # an incident still open at the end
    for start in range(0, 1500, 250):
        stop = start + 250
        keys = [key for _ in range(start, stop) for key in series]
        chunk = Chunk(np.array([s.timestamps[i] for i in range(start, stop) for s in series.values()]),
                      np.array([s.values[i] for i in range(start, stop) for s in series.values()]),
                      np.arange(len(keys)) + 1, series=keys)
        results = keyed.process(chunk)
        board.write_block(in_input_order(results))
        for result in results:
            for event in result.events:
                board.write(event)
    return board


@pytest.fixture()
def client(board, tmp_path):
    from starlette.testclient import TestClient

    with TestClient(create_app(board, tmp_path / "feedback.jsonl")) as client:
        yield client


def test_the_board_keeps_the_last_points_of_each_series_and_its_incidents(board):
    assert set(board.series) == {"api", "db", "web"}
    web = board.points("web")
    assert len(web["timestamps"]) == 500 and board.series["web"].count == 1500  # bounded: the last 500
    assert web["timestamps"] == sorted(web["timestamps"]) and any(web["is_anomaly"][-3:])
    assert set(web["p"]) == set(board.points("api")["detectors"])
    assert any(record["open"] and record["incident"]["series"] == "web" for record in board.incidents.values())


def test_the_api_lists_series_with_open_incidents_first_and_filters_them(client):
    rows = client.get("/api/series").json()
    assert rows[0]["id"] == "web" and rows[0]["open_incidents"] == 1
    assert [row["id"] for row in client.get("/api/series?q=D").json()] == ["db"]


def test_the_api_sends_only_the_points_after_since(client):
    whole = client.get("/api/series/db").json()
    after = client.get(f"/api/series/db?since={whole['timestamps'][-3]}").json()
    assert after["timestamps"] == whole["timestamps"][-2:] and after["values"] == whole["values"][-2:]
    assert client.get("/api/series/nope").status_code == 404
    assert client.get("/api/series/db?since=yesterday").status_code == 400


def test_incidents_come_open_first_with_their_evidence(client):
    incidents = client.get("/api/incidents").json()
    assert incidents[0]["open"] and incidents[0]["incident"]["series"] == "web"
    assert all(not record["open"] for record in incidents[1:])
    first = incidents[0]["incident"]
    assert first["detectors"] and set(first["evidence"]) == set(first["detectors"])
    assert all(p < 1e-3 for p in first["evidence"].values())  # each detector that fired, below the threshold


def test_feedback_from_the_page_is_appended_to_the_file_the_stream_follows(client, tmp_path):
    from anomaly.feedback import read_feedback

    response = client.post("/api/feedback", json={"label": "false_alarm", "start": "2026-07-01 10:00:00",
                                                    "end": "2026-07-01 10:20:00", "incident": 3, "series": "web"})
    assert response.status_code == 200, response.text
    labels = read_feedback(tmp_path / "feedback.jsonl")
    assert [(label.kind, label.end - label.start) for label in labels] == [("false_alarm", 1200.0)]
    assert json.loads((tmp_path / "feedback.jsonl").read_text())["series"] == "web"
    assert client.post("/api/feedback", json={"label": "maybe", "start": 1, "end": 2}).status_code == 400
    assert client.post("/api/feedback", json={"label": "anomaly", "start": 5, "end": 2}).status_code == 400


def test_the_page_and_its_vendored_chart_library_are_served_without_a_cdn(client):
    page = client.get("/").text
    assert "/static/uPlot.iife.min.js" in page and "http" not in page.split("<body>")[1]
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert "MIT" in (ROOT / "anomaly" / "dashboard" / "static" / "uPlot.LICENSE").read_text()


def test_an_address_other_than_loopback_needs_allow_remote():
    from anomaly.dashboard import check_remote

    assert parse_address("8050") == ("127.0.0.1", 8050)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(ValueError):
        parse_address("localhost:http")
    with pytest.raises(ValueError, match="--allow-remote"):
        check_remote("0.0.0.0", False)
    check_remote("127.0.0.1", False)


# ---------------------------------------------------------------- a real browser
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver") or "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_page_in_chromium_draws_the_stream_lists_incidents_and_sends_feedback(quick_run, tmp_path):
    selenium = pytest.importorskip("selenium")  # noqa: F841
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DISPLAY": ""}
    stream = subprocess.Popen([sys.executable, str(ROOT / "stream.py"), "--models", str(quick_run), "--rate", "1000",
                               "--no-plot", "--quiet", "--dashboard", f"127.0.0.1:{port}", "--output", "out.jsonl"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the dashboard starts with the stream
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert stream.poll() is None, stream.stderr.read()
                time.sleep(0.2)
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 90, poll_frequency=0.5)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#series li"))  # the series is listed
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#chart canvas"))  # and drawn
        wait.until(lambda b: b.execute_script("return state.data && state.data.is_anomaly.some(x => x)"))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#incidents tbody tr"))
        assert "live" in browser.find_element(By.ID, "status").text
        # clicks inside the page, in one step each (the list is redrawn when incidents change)
        browser.execute_script("document.querySelector('#incidents tbody tr').click()")  # its evidence
        wait.until(lambda b: "threshold" in b.find_element(By.ID, "evidence").text)
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
        browser.execute_script("document.querySelector('#incidents tbody tr button.false-alarm').click()")
        feedback = tmp_path / "feedback.jsonl"  # a whole line, not just the file: it is created before it is written
        wait.until(lambda b: feedback.exists() and feedback.read_text().endswith("\n"))
        label = json.loads((tmp_path / "feedback.jsonl").read_text().splitlines()[0])
        assert label["label"] == "false_alarm" and label["start"] <= label["end"]
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        if browser is not None:
            browser.quit()
        stream.terminate()
        stream.wait(timeout=60)
