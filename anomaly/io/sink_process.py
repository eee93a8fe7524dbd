"""Sinks in a child process, so that writing records overlaps scoring during replay.

Formatting a record is pure Python and holds the GIL, and scoring hands the GIL back and
forth thousands of times per block, so in one process the two cannot overlap (measured
here: scoring twelve times slower beside a busy Python thread). A child process has an
interpreter of its own. The parent sends each :class:`~anomaly.io.records.DecisionBlock`
(arrays, pickled) through a pipe; the child writes it while the parent scores the next.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from typing import Literal

from .sinks import OutputSink

SinkSpec = tuple[Literal["output"], str]  # ("output", a path, or - for stdout)
OUTPUT_CLOSED = 3  # the child's exit code when the reader of its stdout went away


def make_sinks(specs: list[SinkSpec]) -> list:
    """Return the sinks ``specs`` describe, opened (files are created now)."""
    made = {"output": OutputSink}
    return [made[kind](argument) for kind, argument in specs]


def _serve(connection, specs: list[SinkSpec]) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when to stop, so that the
    # blocks already sent are still written
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sinks = make_sinks(specs)
    try:
        while (block := connection.recv()) is not None:
            for sink in sinks:
                sink.write_block(block)
    except BrokenPipeError:  # stdout's reader went away (| head): a quiet stop, not a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(OUTPUT_CLOSED)
    finally:
        for sink in sinks:
            try:
                sink.close()
            except BrokenPipeError:
                pass


class SinkProcess:
    """The sinks of ``specs``, run in a child process; used like one sink (``write_block``, ``close``)."""

    def __init__(self, specs: list[SinkSpec]):
        context = multiprocessing.get_context("spawn")  # no fork: the parent runs library threads
        receiver, self._sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(receiver, specs), daemon=True,
                                        name="anomaly-sinks")
        self._process.start()
        receiver.close()

    def write_block(self, block) -> None:
        try:
            self._send(block)
        except (BrokenPipeError, EOFError):
            self._process.join()
            self._raise_failure()

    def _send(self, message) -> None:
        """Send ``message`` whole: a Ctrl-C arriving meanwhile is handled after it, not halfway through.

        A message cut in two would leave the child unable to read anything after it.
        """
        if threading.current_thread() is not threading.main_thread():
            self._sender.send(message)  # only the main thread receives signals
            return
        interrupted = []
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        try:
            self._sender.send(message)
        finally:
            signal.signal(signal.SIGINT, previous)
        if interrupted:  # now handled as it would have been (a graceful stop notes it; the default raises)
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt

    def _raise_failure(self) -> None:
        code = self._process.exitcode
        if code == OUTPUT_CLOSED:
            raise BrokenPipeError("the reader of the output went away")
        if code != 0:
            raise OSError(f"the output process failed (exit code {code}); see the error above")

    def close(self) -> None:
        """Wait until everything sent is written; raise ``OSError`` if the child failed."""
        try:
            self._send(None)
        except (BrokenPipeError, EOFError):
            pass
        self._sender.close()
        self._process.join()
        self._raise_failure()

    def abort(self) -> None:
        """Stop the child now (what is still in the pipe is lost)."""
        self._process.terminate()
        self._process.join()
