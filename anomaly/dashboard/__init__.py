"""A live web dashboard: every series, its anomalies and incidents, each detector's evidence, feedback in one click.

``stream.py --dashboard [HOST:]PORT`` serves it while streaming (:func:`serve` beside the
scoring, fed by a :class:`~anomaly.dashboard.buffer.Board` sink); ``python -m
anomaly.dashboard --output FILE --alerts FILE`` shows a finished run from its files.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from .buffer import Board

DEFAULT_ADDRESS = "127.0.0.1:8050"


@dataclass
class Served:
    """A dashboard being served in a background thread."""

    server: object
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def parse_address(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``[HOST:]PORT`` (host 127.0.0.1 when left out); raise ``ValueError``."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: give [HOST:]PORT, e.g. 8050 or 127.0.0.1:8050")
    return host, int(port)


def check_remote(host: str, allowed: bool) -> None:
    """Raise ``ValueError`` for an address other than loopback without ``allowed``; warn when allowed."""
    from ..io.server import is_loopback

    if is_loopback(host):
        return
    if not allowed:
        raise ValueError(f"{host} is not loopback: every machine that can reach it would see the dashboard; add "
                         "--allow-remote if that is what you want")
    print(f"warning: serving the dashboard on {host}, not loopback: anyone who can reach it sees every series "
          "and can label incidents", file=sys.stderr)


def serve(board: Board, host: str = "127.0.0.1", port: int = 8050, feedback: str = "feedback.jsonl") -> Served:
    """Serve the dashboard of ``board`` on ``host:port`` from a background thread; return it once listening
    (port 0: any free port). Raises ``OSError`` when the address cannot be bound."""
    import asyncio

    import uvicorn

    from .app import create_app

    config = uvicorn.Config(create_app(board, feedback), host=host, port=port, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failed.append(exc)

    thread = threading.Thread(target=run, name="anomaly-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise OSError(f"cannot serve the dashboard on {host}:{port}"
                      + (f": {failed[0]}" if failed else " (the server did not start)"))
    bound = server.servers[0].sockets[0].getsockname()[1]
    return Served(server, thread, host, bound)


__all__ = ["Board", "DEFAULT_ADDRESS", "Served", "check_remote", "parse_address", "serve"]
