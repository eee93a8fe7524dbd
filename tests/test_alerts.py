"""Incidents, not floods: the alarm filter, the alert lines, JSON Lines and the webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from anomaly.io.alarms import AlarmFilter
from anomaly.io.alerts import WebhookAlerts, describe, payload
from anomaly.io.records import DecisionBlock


def kinds(events):
    return [(e.kind, e.incident.id) for e in events]


def test_flags_close_together_are_one_incident_and_the_cooldown_closes_it():
    f = AlarmFilter(cooldown=3)
    flags = [0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    events = f.update_flags(np.array(flags, dtype=bool))
    assert kinds(events) == [("opened", 1), ("closed", 1), ("opened", 2)]
    assert events[1].incident.flagged == 3  # the flags 1, 3 and 4
    assert events[0].incident.flagged == 1  # the opened event keeps the incident as it stood then
    assert kinds(f.close()) == [("closed", 2)] and f.close() == []


def test_an_incident_opens_only_when_k_of_the_last_n_points_are_flagged():
    f = AlarmFilter(k=2, n=3, cooldown=2)
    assert f.update_flags(np.array([1, 0, 0, 1, 0], dtype=bool)) == []  # never 2 flags within 3 points
    assert kinds(f.update_flags(np.array([1], dtype=bool))) == [("opened", 1)]


def test_incidents_span_blocks_and_ignore_warm_up_and_filled_points():
    f = AlarmFilter(cooldown=2)
    first = block([0, 1, 1], warmup=[1, 1, 0])  # the warm-up flag is no flag (it never is one anyway)
    assert kinds(f.update(first)) == [("opened", 1)] and f.open.flagged == 1
    second = block([0, 0, 0], filled=[1, 1, 0])  # filled points do not count toward the cool-down
    assert f.update(second) == [] and f.open is not None
    assert kinds(f.update(block([0]))) == [("closed", 1)]


def block(flags, warmup=None, filled=None, scores=None) -> DecisionBlock:
    n = len(flags)
    flags = np.array(flags, dtype=bool)
    p = np.where(flags[:, None], [[1e-5, 0.5]], [[0.5, 0.5]])
    return DecisionBlock(
        ["shesd", "iforest"], 1e-3, 1767225600.0 + 600 * np.arange(n), np.arange(n, dtype=float),
        np.array(scores if scores is not None else np.where(flags, 0.7, 0.1), dtype=float),
        np.where(flags, 1e-5, 0.5), flags, p, np.array(warmup or [0] * n, dtype=bool),
        np.full(n, 1.5), np.full(n, 0.2), np.arange(n), [bool(x) for x in flags], ["spike" if x else "" for x in flags],
        np.array(filled, dtype=bool) if filled is not None else None)


def test_an_incident_keeps_its_peak_and_the_detectors_that_fired():
    f = AlarmFilter(cooldown=5)
    events = f.update(block([1, 1, 1, 0], scores=[0.6, 0.9, 0.7, 0.1])) + f.close()
    incident = events[-1].incident
    assert incident.peak_score == 0.9 and incident.peak_value == 1.0 and incident.detectors == ["shesd"]
    assert incident.flagged == 3 and incident.end - incident.start == 1200 and incident.true_kind == "spike"
    assert describe(events[0]).startswith("ANOMALY 2026-01-01 00:00:00  incident #1 opened")
    assert "RESOLVED incident #1" in describe(events[-1]) and "(3 flagged points)" in describe(events[-1])
    assert payload(events[-1])["incident"]["start"] == "2026-01-01 00:00:00"
    assert events[0].incident.peak_score == 0.6 and "score 0.60" in describe(events[0])  # the first point's


def test_an_incident_that_flagged_an_injected_anomaly_found_it_wherever_its_peak_fell():
    f = AlarmFilter(cooldown=5)
    lingering = block([1, 1, 1, 0], scores=[0.6, 0.9, 0.7, 0.1])
    lingering.labels[1:] = [False] * 3  # only the first flagged point was injected; the peak came after it
    incident = (f.update(lingering) + f.close())[-1].incident
    assert incident.peak_score == 0.9 and incident.true_kind == "spike"
    f = AlarmFilter(cooldown=5)
    unlabelled = block([1, 1, 0], scores=[0.6, 0.9, 0.1])
    unlabelled.labels[:] = [False] * 3
    assert (f.update(unlabelled) + f.close())[-1].incident.true_kind == "normal"


class Receiver:
    """A local HTTP server that records what is posted; it can fail or stall first."""

    def __init__(self, fail_first: int = 0, status: int = 500, stall: float = 0.0):
        self.bodies, self.requests = [], 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                time.sleep(stall)
                if receiver.requests <= fail_first:
                    self.send_response(status)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def events(count: int):
    f = AlarmFilter(cooldown=1)
    return f.update(block([1, 0] * count))


def post_all(receiver, incidents: int):
    """Send the events of ``incidents`` incidents through a webhook to ``receiver``; close both; return them."""
    hook = WebhookAlerts(receiver.url, retries=3, backoff=0.01)
    for event in events(incidents):
        hook.write(event)
    hook.close()
    receiver.stop()
    return receiver, hook


def test_webhook_retries_with_back_off_and_delivers_in_order():
    receiver, hook = post_all(Receiver(fail_first=2), 3)
    assert hook.delivered == 6 and hook.failed == 0 and receiver.requests == 8
    assert [(b["event"], b["incident"]["id"]) for b in receiver.bodies] == \
        [("opened", 1), ("closed", 1), ("opened", 2), ("closed", 2), ("opened", 3), ("closed", 3)]


def test_webhook_does_not_retry_what_the_receiver_refuses():
    receiver, hook = post_all(Receiver(fail_first=1, status=400), 1)
    assert hook.failed == 1 and hook.delivered == 1 and receiver.requests == 2


def test_a_stalled_webhook_never_holds_up_the_stream():
    receiver = Receiver(stall=1.0)
    hook = WebhookAlerts(receiver.url, retries=0, capacity=10)
    started = time.perf_counter()
    for event in events(50):  # 100 events, far more than the receiver can take
        hook.write(event)
    assert time.perf_counter() - started < 0.5  # the stream goes on at once
    hook.close(grace=0.5)
    receiver.stop()
    assert hook.failed >= 85 and hook.delivered + hook.failed <= 100  # the losses are counted


def test_webhook_needs_an_http_address():
    with pytest.raises(ValueError, match="http"):
        WebhookAlerts("ftp://example.org")


def test_an_incident_orders_the_detectors_that_fired_by_their_strongest_evidence():
    f = AlarmFilter(cooldown=5)
    b = block([1, 1, 0])
    b.p_detectors = np.array([[1e-4, 0.5], [2e-4, 1e-7], [0.5, 0.5]])  # shesd fires first, the forest stronger
    incident = (f.update(b) + f.close())[-1].incident
    assert incident.detectors == ["iforest", "shesd"]
    assert incident.evidence == {"iforest": 1e-7, "shesd": 1e-4}
    assert payload((f.update(block([1, 0])) + f.close())[-1])["incident"]["detectors"] == ["shesd"]
