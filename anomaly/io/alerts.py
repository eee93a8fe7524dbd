"""Where incidents go: a line each on the console and in ``anomaly.log``, JSON Lines, a webhook.

Each sink gets :class:`~anomaly.io.alarms.AlarmEvent` objects: an incident ``opened`` (at its
first flag) and ``closed`` (after its cool-down), so one incident is two lines, not a flood.
The webhook posts from a background thread, with retries and back-off, and never holds up
the stream. It waits on the network, not on Python, so it does not compete for the GIL.
What it could not deliver is counted, and is still in the log.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from .alarms import RANGE, AlarmEvent
from .data import format_timestamp

logger = logging.getLogger(__name__)
LABELS = {RANGE: "beyond every value seen"}  # evidence that is not a detector's, as a message names it


def describe(event: AlarmEvent) -> str:
    """Return the one-line message of an incident event."""
    i = event.incident
    expected = f"  expected {i.expected:.4g} ± {i.spread:.2g}" if math.isfinite(i.expected) else ""
    detectors = ", ".join(f"{LABELS.get(name, name)} (p={i.evidence[name]:.0e})" if name in i.evidence else name
                          for name in i.detectors) or "combined evidence"  # strongest evidence first
    truth = f"  [true: {i.true_kind}]" if i.true_kind else ""
    where = f"  series {i.series}" if i.series is not None else ""
    if event.kind == "opened":
        return (f"ANOMALY {format_timestamp(i.start)}{where}  incident #{i.id} opened  value {i.peak_value:.4g}"
                f"{expected}  score {i.peak_score:.2f}  fired: {detectors}{truth}")
    return (f"RESOLVED{where} incident #{i.id}  {format_timestamp(i.start)} to {format_timestamp(i.end)}"
            f"  ({i.flagged} flagged points)  peak score {i.peak_score:.2f} at {format_timestamp(i.peak_timestamp)}:"
            f" value {i.peak_value:.4g}{expected}  detectors: {detectors}{truth}")


def event_id(event: AlarmEvent) -> str:
    """Return the id of an incident event, the same each time the same event is sent (a receiver that saw it
    can drop a resend): the series, the incident's number and start, and whether it opened or closed."""
    i = event.incident
    return f"{i.series or ''}#{i.id}@{format_timestamp(i.start)}:{event.kind}"


def payload(event: AlarmEvent) -> dict:
    """Return the JSON object of an incident event (timestamps in ISO format, UTC), with its :func:`event_id`."""
    incident = event.incident.to_dict()
    for key in ("start", "end", "peak_timestamp"):
        incident[key] = format_timestamp(incident[key]) if math.isfinite(incident[key]) else None
    for key in ("expected", "spread", "peak_value"):
        incident[key] = incident[key] if math.isfinite(incident[key]) else None
    return {"id": event_id(event), "event": event.kind, "incident": incident}


class ConsoleAlerts:
    """Prints a line when an incident opens and when it closes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def write(self, event: AlarmEvent) -> None:
        print(describe(event), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LogAlerts:
    """Appends the same lines to a log file (``anomaly.log`` by default)."""

    def __init__(self, path: str | Path):
        self.handle = open(path, "a", buffering=1)

    def write(self, event: AlarmEvent) -> None:
        self.handle.write(describe(event) + "\n")

    def close(self) -> None:
        self.handle.close()


class JsonlAlerts:
    """Appends one JSON object per incident event."""

    def __init__(self, path: str | Path):
        self.handle = open(path, "a", buffering=1)

    def write(self, event: AlarmEvent) -> None:
        self.handle.write(json.dumps(payload(event)) + "\n")

    def close(self) -> None:
        self.handle.close()


class WebhookAlerts:
    """POSTs each incident event as JSON to ``url`` from a background thread.

    A failed post (no connection, timeout, HTTP 5xx or 429) is retried ``retries`` times,
    waiting ``backoff`` seconds, then twice as long each time. Other HTTP errors are not
    retried. When more than ``capacity`` events wait, the oldest is dropped. Dropped and
    undelivered events are counted in ``failed``.
    """

    def __init__(self, url: str, retries: int = 5, backoff: float = 0.5, timeout: float = 5.0,
                 capacity: int = 1000):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--alert-webhook {url}: give an http:// or https:// address")
        self.url, self.retries, self.backoff, self.timeout = url, retries, backoff, timeout
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="anomaly-webhook")
        self._thread.start()

    def write(self, event: AlarmEvent) -> None:
        body = json.dumps(payload(event)).encode()
        while True:
            try:
                self._queue.put_nowait(body)
                return
            except queue.Full:  # the receiver is down or slow: keep the newest, count the loss
                try:
                    self._queue.get_nowait()
                    self.failed += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            if self._post(body):
                self.delivered += 1
            else:
                self.failed += 1

    def _post(self, body: bytes) -> bool:
        wait = self.backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return True
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429:
                    logger.warning("webhook %s refused an alert: HTTP %d", self.url, exc.code)
                    return False
            except (urllib.error.URLError, OSError):
                pass
            if attempt < self.retries:
                time.sleep(wait)
                wait *= 2
        logger.warning("webhook %s: an alert was not delivered after %d tries", self.url, self.retries + 1)
        return False

    def close(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for the events still queued; count the rest as failed."""
        deadline = time.monotonic() + grace
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.failed += self._queue.qsize()
