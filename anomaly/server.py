"""A TCP source: clients send lines, and each line is answered with its decision as one JSON line.

    python stream.py --source tcp://127.0.0.1:7777     # tcp://:7777 binds to loopback too
    python -m anomaly.client tcp://127.0.0.1:7777 --source metrics.csv

Each connection is a stream of its own: its own history, order checks and gaps. Lines hold
what stdin takes (``timestamp,value``, a bare value or a JSON object). Every data line gets
one reply line, in order: the decision record that ``--output`` writes, or ``{"position":
N, "rejected": REASON, "raw": LINE}``. A header line gets none. One thread serves every
client with ``selectors``. Replies wait in a buffer per client, so a client that does not
read cannot stall the others.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .records import Chunk
from .sources import LineReader, LineSplitter

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


def parse_address(source: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``tcp://HOST:PORT``; a missing host means loopback. Raises ``ValueError``."""
    parts = urlsplit(source)
    if parts.scheme != "tcp" or parts.port is None or parts.path not in ("", "/"):
        raise ValueError(f"{source!r}: write a TCP source as tcp://HOST:PORT (HOST defaults to {LOOPBACK})")
    return parts.hostname or LOOPBACK, parts.port


@dataclass(eq=False)
class Client:
    """One connection: its socket, its line reader and what it owes and is owed."""

    sock: socket.socket
    name: str  # host:port of the peer
    reader: LineReader
    splitter: LineSplitter = field(default_factory=LineSplitter)
    outbox: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the client has finished sending


class LineServer:
    """Listens on ``host:port`` and yields each client's arriving lines as chunks."""

    def __init__(self, host: str, port: int, interval: float, start: float, time_format: str = "auto"):
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._interval, self._start, self._time_format = interval, start, time_format
        self.address = self._listener.getsockname()[:2]

    def chunks(self) -> Iterator[tuple[Client, Chunk]]:
        """Yield ``(client, chunk)`` as lines arrive; answer with :meth:`reply` before the next one."""
        while True:
            for key, events in self._selector.select():
                if key.data is None:
                    self._accept()
                    continue
                client = key.data
                if events & selectors.EVENT_WRITE:
                    self._flush(client)
                if events & selectors.EVENT_READ and not client.ended:
                    try:
                        data = client.sock.recv(1 << 16)
                    except ConnectionError:
                        data = b""
                    lines = client.splitter.feed(data) if data else client.splitter.end()
                    if not data:
                        client.ended = True
                    if lines and (chunk := client.reader.chunk(lines)) is not None:
                        yield client, chunk
                    if client.ended:
                        self._flush(client)

    def reply(self, client: Client, text: str) -> None:
        """Queue ``text`` for ``client`` and send what the socket takes now."""
        client.outbox += text.encode()
        self._flush(client)

    def _accept(self) -> None:
        sock, peer = self._listener.accept()
        sock.setblocking(False)
        client = Client(sock, f"{peer[0]}:{peer[1]}", LineReader(self._interval, self._start, self._time_format))
        self._selector.register(sock, selectors.EVENT_READ, client)
        logger.info("client %s connected", client.name)

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outbox) if client.outbox else 0
        except BlockingIOError:
            sent = 0
        except ConnectionError:  # the client went away: what it was owed is dropped
            client.outbox.clear()
            client.ended, sent = True, 0
        del client.outbox[:sent]
        if client.ended and not client.outbox:
            self._selector.unregister(client.sock)
            client.sock.close()
            logger.info("client %s done", client.name)
        else:
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
            self._selector.modify(client.sock, wanted, client)

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


def replies(block_lines: list[tuple[int, str]], rejected) -> str:
    """Return one reply line per input line, in input order: records ``(position, line)`` and rejections."""
    answers = block_lines + [(r.position, json.dumps({"position": r.position, "rejected": r.reason,
                                                      "raw": r.raw}) + "\n") for r in rejected]
    return "".join(text for _, text in sorted(answers, key=lambda a: a[0]))


def feed(server: LineServer, make_runner: Callable) -> Iterator[tuple[object, Chunk, Callable]]:
    """Yield ``(runner, chunk, reply)`` for every chunk a client sends; each client gets a runner of its own.

    After scoring, call ``reply(block, rejected)``: it answers the client, one line per input line.
    """
    from .sinks import records_text

    runners: dict[Client, object] = {}
    for client, chunk in server.chunks():
        runner = runners.setdefault(client, make_runner())

        def reply(block, rejected, client=client) -> None:
            keep = [i for i, status in enumerate(block.status()) if status != "filled"]  # input lines only
            lines = "".join(records_text(block)).splitlines(keepends=True)
            server.reply(client, replies([(int(block.positions[i]), lines[i]) for i in keep], rejected))

        yield runner, chunk, reply
