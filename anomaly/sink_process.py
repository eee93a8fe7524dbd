"""Sinks in a child process, so that writing records overlaps scoring during replay.

Formatting a record is pure Python and holds the GIL, and scoring hands the GIL back and
forth thousands of times per block, so in one process the two cannot overlap (measured
here: scoring twelve times slower beside a busy Python thread). A child process has an
interpreter of its own. The parent sends each :class:`~anomaly.records.DecisionBlock`
(arrays, pickled) through a pipe; the child writes it while the parent scores the next.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from typing import Literal

from .sinks import ConsoleSink, LogFileSink, OutputSink

SinkSpec = tuple[Literal["console", "log", "output"], str]  # ("console", "stdout"|"stderr") or a path


def make_sinks(specs: list[SinkSpec]) -> list:
    """Return the sinks ``specs`` describe, opened (files are created now)."""
    made = {"console": lambda where: ConsoleSink(sys.stderr if where == "stderr" else sys.stdout),
            "log": LogFileSink, "output": OutputSink}
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
    finally:
        for sink in sinks:
            sink.close()


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
            self._sender.send(block)
        except (BrokenPipeError, EOFError):
            self._process.join()
            raise OSError(f"the output process stopped (exit code {self._process.exitcode}); "
                          "see the error above") from None

    def close(self) -> None:
        """Wait until everything sent is written; raise ``OSError`` if the child failed."""
        try:
            self._sender.send(None)
        except (BrokenPipeError, EOFError):
            pass
        self._sender.close()
        self._process.join()
        if self._process.exitcode != 0:
            raise OSError(f"the output process failed (exit code {self._process.exitcode}); see the error above")
