"""Ctrl-C (SIGINT) and SIGTERM stop a stream cleanly: nothing already read is lost.

While :class:`GracefulStop` is active, a signal never cuts a chunk in half. Where the
program only waits (for input, a pacing sleep, a training it can drop), the signal
interrupts the wait at once with :class:`StopRequested`; anywhere else it is noted, and
the stream stops after the chunk in hand is scored and written. A second Ctrl-C while
the stream finishes (flushing its output) raises ``KeyboardInterrupt``: the user insists.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
_active: GracefulStop | None = None


class StopRequested(Exception):
    """A stop signal arrived while the program was waiting; the wait is abandoned."""


class GracefulStop:
    """Handles SIGINT and SIGTERM for the ``with`` block (main thread only; elsewhere it does nothing)."""

    def __init__(self):
        self.signum: int | None = None  # the first stop signal received
        self.finishing = False  # set once the stream is over: a second Ctrl-C then raises KeyboardInterrupt
        self._waiting = 0  # inside waiting(): a signal interrupts
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        """130 after SIGINT, 143 after SIGTERM, ``None`` when no signal arrived."""
        return EXIT_CODES.get(self.signum) if self.signum is not None else None

    def __enter__(self) -> GracefulStop:
        global _active
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
            _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if _active is self:
            _active = None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        elif self.finishing and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self._waiting:
            raise StopRequested

    @contextmanager
    def waiting(self):
        """Let a stop signal interrupt the block (raising :class:`StopRequested`); raise it at once if one came."""
        if self.requested:
            raise StopRequested
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1


@contextmanager
def interruptible():
    """A stretch of work that may be dropped when a stop signal arrives (an inline refit): inside the active
    :class:`GracefulStop`, the signal raises :class:`StopRequested` here. Without one, nothing changes."""
    stop = _active
    if stop is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    with stop.waiting():
        yield


def stop_requested() -> bool:
    """Whether the active :class:`GracefulStop` has received a stop signal (``False`` without one)."""
    return _active is not None and _active.requested


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C where no :class:`GracefulStop` is active (training, loading)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def terminate_like_interrupt() -> None:
    """Make SIGTERM raise :class:`Terminated`, so that cleanup (``finally``, ``except BaseException``) runs."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def interrupted_exit_code(exc: KeyboardInterrupt) -> int:
    """Return 143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return EXIT_CODES[signal.SIGTERM] if isinstance(exc, Terminated) else EXIT_CODES[signal.SIGINT]
