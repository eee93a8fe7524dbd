"""A TCP source: clients send lines, and each line is answered with its decision as one JSON line.

    python stream.py --source tcp://127.0.0.1:7777     # tcp://:7777 binds to loopback too
    python -m anomaly.client tcp://127.0.0.1:7777 --source metrics.csv

Each connection is a stream of its own: its own history, order checks and gaps, and its
own runner, freed when it closes. Lines hold what stdin takes (``timestamp,value``, a bare
value or a JSON object). Every data line gets one reply line, in order: the decision
record that ``--output`` writes, or ``{"position": N, "rejected": REASON, "raw": LINE}``.
A header line gets none. One thread serves every client with ``selectors``.

The server is built to face clients it does not trust (:class:`Limits`): a line longer
than ``max_line`` is rejected; a client whose unread replies pass ``max_outbox`` bytes, or
that sends nothing for ``idle_timeout`` seconds, is dropped; beyond ``max_clients``
connections, a new one is told the server is full and closed; when the process runs out
of file descriptors, the new connection is refused and the server goes on. With a
``token``, the first line of every connection must be ``AUTH <token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .parse import MAX_LINE
from .records import Chunk
from .sources import LineReader, LineSplitter

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
SELECT_S = 1.0  # how often idle clients are looked for when nothing arrives


@dataclass(frozen=True)
class Limits:
    """What one server allows; the defaults suit a few dozen trusted senders on one host."""

    max_clients: int = 64  # connections at once; one more is told "server full" and closed
    max_line: int = MAX_LINE  # bytes of one line; a longer line is rejected (its start kept)
    max_outbox: int = 16 << 20  # bytes of replies a client has not read yet; beyond, it is dropped
    idle_timeout: float = 300.0  # seconds without a byte from a client before it is dropped; 0: never


def parse_address(source: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``tcp://HOST:PORT``; a missing host means loopback. Raises ``ValueError``."""
    parts = urlsplit(source)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or port is None or parts.path not in ("", "/"):
        raise ValueError(f"{source!r}: write a TCP source as tcp://HOST:PORT (HOST defaults to {LOOPBACK})")
    return parts.hostname or LOOPBACK, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(eq=False)
class Client:
    """One connection: its socket, its line reader and what it owes and is owed."""

    sock: socket.socket
    name: str  # host:port of the peer
    reader: LineReader
    splitter: LineSplitter
    authenticated: bool
    outbox: bytearray = field(default_factory=bytearray)
    last_seen: float = field(default_factory=time.monotonic)
    ended: bool = False  # the client has finished sending (or is being dropped)
    closed: bool = False  # the socket is closed and unregistered


class LineServer:
    """Listens on ``host:port`` and yields each client's arriving lines as chunks."""

    def __init__(self, host: str, port: int, interval: float, start: float, time_format: str = "auto",
                 limits: Limits = Limits(), token: str | None = None):
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._interval, self._start, self._time_format = interval, start, time_format
        self.limits, self._token = limits, token
        self._clients: set[Client] = set()
        self._closed_clients: list[Client] = []  # closed since the last look, for :meth:`chunks` to report
        self._spare = os.open(os.devnull, os.O_RDONLY)  # given up to refuse a connection when descriptors run out
        self.address = self._listener.getsockname()[:2]
        self.refused = 0  # connections turned away: server full, out of descriptors, failed authentication
        self.dropped = 0  # clients dropped: unread replies, idle, too slow

    def chunks(self) -> Iterator[tuple[Client, Chunk | None]]:
        """Yield ``(client, chunk)`` as lines arrive; answer with :meth:`reply` before the next one.

        ``(client, None)`` says that the client is gone: its stream has ended.
        """
        while True:
            for key, events in self._selector.select(SELECT_S):
                if key.data is None:
                    self._accept()
                    continue
                client = key.data
                if client.closed:
                    continue
                if events & selectors.EVENT_WRITE:
                    self._flush(client)
                if events & selectors.EVENT_READ and not client.ended:
                    if (chunk := self._receive(client)) is not None:
                        yield client, chunk
                    if client.ended:
                        self._flush(client)
            self._drop_idle()
            while self._closed_clients:
                yield self._closed_clients.pop(), None

    def _receive(self, client: Client) -> Chunk | None:
        """Read what ``client`` sent; return the chunk of its complete lines, if any."""
        try:
            data = client.sock.recv(1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        client.last_seen = time.monotonic()
        lines = client.splitter.feed(data) if data else client.splitter.end()
        if not data:
            client.ended = True
        if lines and not client.authenticated:
            lines = self._authenticate(client, lines)
        return client.reader.chunk(lines) if lines else None

    def _authenticate(self, client: Client, lines: list[str]) -> list[str]:
        """Check the first line against the token; return the lines after it (none when it fails)."""
        first, rest = lines[0], lines[1:]
        word, _, given = first.partition(" ")
        if word == "AUTH" and hmac.compare_digest(given.strip().encode(), self._token.encode()):
            client.authenticated = True
            return rest
        self.refused += 1
        logger.warning("client %s refused: no valid AUTH line", client.name)
        client.outbox += b'{"rejected": "authentication required: send AUTH <token> first"}\n'
        client.ended = True
        return []

    def reply(self, client: Client, text: str) -> None:
        """Queue ``text`` for ``client`` and send what the socket takes now; drop a client that does not read."""
        if client.closed:
            return
        client.outbox += text.encode()
        self._flush(client)
        if not client.closed and len(client.outbox) > self.limits.max_outbox:
            self.dropped += 1
            logger.warning("client %s dropped: %d bytes of replies unread (limit %d)", client.name,
                           len(client.outbox), self.limits.max_outbox)
            self._close(client)

    def _accept(self) -> None:
        try:
            sock, peer = self._listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # out of file descriptors, say: refuse this one, keep serving the others
            self._refuse_without_descriptor(exc)
            return
        if len(self._clients) >= self.limits.max_clients:
            self.refused += 1
            logger.warning("client %s:%s refused: %d connections already (limit)", peer[0], peer[1],
                           len(self._clients))
            try:
                sock.send(b'{"rejected": "server full: too many connections"}\n')
            except OSError:
                pass
            sock.close()
            return
        sock.setblocking(False)
        reader = LineReader(self._interval, self._start, self._time_format, self.limits.max_line)
        client = Client(sock, f"{peer[0]}:{peer[1]}", reader, LineSplitter(self.limits.max_line),
                        authenticated=self._token is None)
        self._clients.add(client)
        self._selector.register(sock, selectors.EVENT_READ, client)
        logger.info("client %s connected", client.name)

    def _refuse_without_descriptor(self, exc: OSError) -> None:
        """Accept the waiting connection with the spare descriptor and close it at once (else it waits forever)."""
        self.refused += 1
        logger.warning("a connection was refused: %s", exc.strerror or exc)
        os.close(self._spare)
        try:
            sock, _ = self._listener.accept()
            sock.close()
        except OSError:
            pass
        finally:
            self._spare = os.open(os.devnull, os.O_RDONLY)

    def _flush(self, client: Client) -> None:
        if client.closed:
            return
        try:
            sent = client.sock.send(client.outbox) if client.outbox else 0
        except BlockingIOError:
            sent = 0
        except OSError:  # the client went away: what it was owed is dropped
            client.outbox.clear()
            client.ended, sent = True, 0
        del client.outbox[:sent]
        if client.ended and not client.outbox:
            self._close(client)
        else:
            wanted = (0 if client.ended else selectors.EVENT_READ) | (selectors.EVENT_WRITE if client.outbox else 0)
            self._selector.modify(client.sock, wanted, client)

    def _drop_idle(self) -> None:
        if not self.limits.idle_timeout:
            return
        now = time.monotonic()
        for client in [c for c in self._clients if now - c.last_seen > self.limits.idle_timeout]:
            self.dropped += 1
            logger.warning("client %s dropped: idle for %.0f s", client.name, now - client.last_seen)
            self._close(client)

    def _close(self, client: Client) -> None:
        """Close and forget ``client``; :meth:`chunks` then reports it gone."""
        if client.closed:
            return
        client.closed = client.ended = True
        client.outbox = bytearray()
        self._selector.unregister(client.sock)
        client.sock.close()
        self._clients.discard(client)
        self._closed_clients.append(client)
        logger.info("client %s done", client.name)

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()
        os.close(self._spare)


def replies(block_lines: list[tuple[int, str]], rejected) -> str:
    """Return one reply line per input line, in input order: records ``(position, line)`` and rejections."""
    answers = block_lines + [(r.position, json.dumps({"position": r.position, "rejected": r.reason,
                                                      "raw": r.raw}) + "\n") for r in rejected]
    return "".join(text for _, text in sorted(answers, key=lambda a: a[0]))


def feed(server: LineServer, make_runner: Callable) -> Iterator[tuple[object, Chunk | None, Callable | None]]:
    """Yield ``(runner, chunk, reply)`` for every chunk a client sends; each client gets a runner of its own.

    After scoring, call ``reply(block, rejected)``: it answers the client, one line per input line.
    ``(runner, None, None)`` says that the client is gone: the caller finishes its stream and lets
    the runner go.
    """
    from .sinks import records_text

    runners: dict[Client, object] = {}
    for client, chunk in server.chunks():
        if chunk is None:
            if (runner := runners.pop(client, None)) is not None:
                yield runner, None, None
            continue
        if (runner := runners.get(client)) is None:
            runner = runners[client] = make_runner()

        def reply(block, rejected, client=client) -> None:
            keep = [i for i, status in enumerate(block.status()) if status != "filled"]  # input lines only
            lines = "".join(records_text(block)).splitlines(keepends=True)
            server.reply(client, replies([(int(block.positions[i]), lines[i]) for i in keep], rejected))

        yield runner, chunk, reply
