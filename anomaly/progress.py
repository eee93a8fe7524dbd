"""Progress on long work (training, replays of files, evaluations), drawn with rich on a terminal.

A command line opens one display with :func:`display` when a person is watching (see
:func:`wanted`); the work inside reports through :func:`task` and :func:`stage`, which do
nothing where no display is open: pipes, CI, tests, worker processes, library use. While a
display is up, what is printed to stderr (log lines, the summary) and, on a terminal, to
stdout (incident lines) goes above it; when it closes (at the end, on an error or on Ctrl-C)
the bars are erased and the cursor shown again, so that what was printed stays readable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager

_progress = None  # the open rich Progress, if any
_tasks: list["Task"] = []  # the tasks open now, innermost last


def wanted(quiet: bool = False, records_on_stdout: bool = False) -> bool:
    """Return whether to draw progress: stderr is a terminal, no ``--quiet``, stdout does not carry records,
    and the environment does not say ``ANOMALY_PROGRESS=0``."""
    return (not quiet and not records_on_stdout and sys.stderr.isatty()
            and os.environ.get("ANOMALY_PROGRESS", "1") != "0")


def active() -> bool:
    """Return whether a progress display is open."""
    return _progress is not None


@contextmanager
def display(enabled: bool = True):
    """Open the progress display for the work inside (nothing when ``enabled`` is false or one is open)."""
    global _progress
    if not enabled or _progress is not None:
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), TaskProgressColumn(),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                        TextColumn("{task.fields[detail]}"),
                        console=Console(file=sys.stderr), transient=True,
                        redirect_stdout=sys.stdout.isatty(), redirect_stderr=True)
    with progress:
        _progress = progress
        try:
            yield
        finally:
            _progress = None
            _tasks.clear()


class Task:
    """One bar of the display: ``total`` units of work, done bit by bit."""

    def __init__(self, progress, description: str, total: float | None, unit: str):
        self._progress, self.unit, self.total = progress, unit, total
        self.done = 0.0
        self.started = time.perf_counter()
        self._id = progress.add_task(description, total=total, detail="")

    def advance(self, amount: float = 1.0, detail: str | None = None) -> None:
        """Count ``amount`` more units done (and show ``detail`` beside the bar)."""
        self.done += amount
        fields = {} if detail is None else {"detail": detail}
        self._progress.update(self._id, completed=self.done, **fields)

    def describe(self, detail: str) -> None:
        """Show ``detail`` (what is being done now) beside the bar."""
        self._progress.update(self._id, detail=detail)

    def count(self, amount: float) -> None:
        """Count ``amount`` more units done and show how many are done and how fast."""
        self.done += amount
        self._progress.update(self._id, completed=self.done, detail=self.counted())

    def counted(self) -> str:
        """Return what is done so far and how fast, as text (``12,345/200,000 points, 98,765/s``)."""
        seconds = time.perf_counter() - self.started
        of = f"/{self.total:,.0f}" if self.total is not None else ""
        return f"{self.done:,.0f}{of} {self.unit}" + (f", {self.done / seconds:,.0f}/s" if seconds > 0 else "")

    def keras_callbacks(self, keras) -> list:
        """Return a callback of the ``keras`` module that advances this task by one at the end of every epoch."""
        task = self

        class EpochProgress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                loss = (logs or {}).get("val_loss")
                task.advance(1, f"epoch {epoch + 1}/{task.total:g}" + (f", loss {loss:.3g}" if loss else ""))

        return [EpochProgress()]

    def close(self) -> None:
        self._progress.remove_task(self._id)


class _NoTask:
    """What :func:`task` gives where no display is open: every call does nothing."""

    unit, total, done = "", None, 0.0

    def advance(self, amount: float = 1.0, detail: str | None = None) -> None:
        pass

    def describe(self, detail: str) -> None:
        pass

    def count(self, amount: float) -> None:
        pass

    def counted(self) -> str:
        return ""

    def keras_callbacks(self, keras) -> list:
        return []

    def close(self) -> None:
        pass


@contextmanager
def task(description: str, total: float | None, unit: str = "steps", shown: bool = True):
    """Yield a bar of ``total`` units (``None``: unknown) in the open display, removed when the work ends.

    Where no display is open, or ``shown`` is false, this yields a task whose calls do nothing.
    """
    if _progress is None or not shown:
        yield _NoTask()
        return
    bar = Task(_progress, description, total, unit)
    _tasks.append(bar)
    try:
        yield bar
    finally:
        if bar in _tasks:
            _tasks.remove(bar)
            bar.close()
            _progress.refresh()  # what is printed next must not come with the bar drawn as it was


@contextmanager
def stage(detail: str):
    """Show ``detail`` beside the innermost bar while the work inside runs, then advance that bar by one."""
    bar = _tasks[-1] if _tasks else None
    if bar is not None:
        bar.describe(detail)
    yield
    if bar is not None and bar in _tasks:
        bar.advance(1)


def note(detail: str) -> None:
    """Show ``detail`` beside the innermost bar (nothing where none is open)."""
    if _tasks:
        _tasks[-1].describe(detail)


def advance(detail: str | None = None) -> None:
    """Advance the innermost bar by one (and show ``detail`` beside it); nothing where none is open."""
    if _tasks:
        _tasks[-1].advance(1, detail)


@contextmanager
def muted():
    """Let the work inside report nothing: its :func:`stage`, :func:`note` and :func:`advance` calls do nothing
    (for work done many times under a bar that counts it otherwise)."""
    if _progress is None:
        yield
        return
    _tasks.append(_NoTask())
    try:
        yield
    finally:
        _tasks.pop()


class ConsoleHandler(logging.StreamHandler):
    """A log handler that writes to whatever ``sys.stderr`` is when it writes, so that log lines go above
    an open display rather than through it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler sets it; the property decides
        pass
