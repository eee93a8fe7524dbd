"""Refitting the models on recent normal points, in the background, swapped in whole.

Recalibration (:mod:`anomaly.online.adapt`) moves the thresholds and keeps the models. When the
stream has changed for good, or has outgrown a short training history, the models must
learn the new normal themselves. A :class:`Refitter` trains a fresh ensemble with the
run's settings, seasonal period and time grid on the points the adapter admitted (an
anomaly never teaches), in a spawned process at idle priority with one thread, so the
stream goes on being scored meanwhile. It saves the result as a new run in ``models/``
(atomically, as ``train.py`` does) and hands it back; the runner swaps it in between two
blocks, so every point is decided by one complete ensemble, the old or the new.

``background=False`` trains in the calling thread instead, and the swap happens at the
next boundary: results that do not depend on timing (the NAB evaluation, tests).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config import Config
from .adapt import RefitData

logger = logging.getLogger(__name__)


def _quiet_child() -> None:
    """Set up a refit process: idle priority, one thread, no console logging: the stream comes first.

    ``SCHED_IDLE`` runs it only on CPU time the stream leaves over (measured: at nice 10 it
    still took a tenth of a 2-core machine from a full-speed replay); nice 10 where Linux's
    idle class is not available.
    """
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the stream decides, and stops us
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(10)
        except (AttributeError, OSError):
            pass
    logging.getLogger("anomaly").setLevel(logging.WARNING)


def train_refit(config: Config, data: RefitData, period: int, grid, models_dir: str | None,
                parent: str, move_latest: bool) -> tuple[str, dict]:
    """Train on ``data`` and save a run under ``models_dir`` (a temporary folder when ``None``).

    Returns the run folder and its report. LATEST moves to the new run only when
    ``move_latest`` and it still names ``parent`` or an earlier refit of it (a run trained
    meanwhile with ``train.py`` is never displaced).
    """
    from ..model.runs import write_run
    from ..model.training import train

    ensemble, report = train(data.timestamps, data.values, config, exclude=data.exclude, labels=data.labels,
                             period=period, grid=grid)
    keeps_promise(report)
    beats_models_in_use(report, data, ensemble, learned_cycle=not period and report["period"] > 0)
    report["data"] = {"source": "refit", "reason": data.reason, "refit_of": parent}
    report["detectors"] = list(ensemble.names)  # (as train.py's manifest says)
    directory = Path(models_dir) if models_dir else Path(tempfile.mkdtemp(prefix="anomaly-refit-"))

    def still_ours(current: Path | None) -> bool:  # decided under the models folder's lock
        return current is not None and (current.name == parent or _root_of(current) == parent)

    run = write_run(directory, ensemble, report, move_latest=still_ours if move_latest else False)
    return str(run), report


def keeps_promise(report: dict, level: float = 0.01) -> None:
    """Raise ``ValueError`` when a refit's held-out false alarms are significantly above its target.

    The new models are validated on the last part of their own history, never seen in
    training. Flags there beyond what ``Binomial(n, target)`` allows at ``level`` mean the
    new normal was not learned (measured on NAB's spiky series: 12% flagged): the models in
    use are kept, and the run is not saved.
    """
    from scipy.stats import binom

    n, flagged, target = report["validation_points"], report["validation_flags"], report["target_far"]
    if flagged and binom.sf(flagged - 1, n, target) < level:
        raise ValueError(f"the new models flagged {flagged} of {n} held-out points (target {target:g}): "
                         "keeping the models in use")


def beats_models_in_use(report: dict, data: RefitData, ensemble, learned_cycle: bool = False) -> None:
    """Raise ``ValueError`` unless the new ``ensemble`` flags fewer recent points than the models in use did.

    Both are judged on the same recent points, every point of the refit's validation part
    (which the new models never trained on), the ones the models in use flagged included:
    the new models learned nothing from those, so whether they flag them too is the test.
    A tie keeps the models in use: a swap must earn its place (measured on NAB: refits that
    only kept the promise on their own validation part later alarmed more, e.g. 18 against
    3 flags per 500 points on cpu_utilization_asg_misconfiguration; and again when refits
    that outgrew a short head won ties: 34 flags outside NAB's labels on nyc_taxi against 8).
    """
    if data.flagged is None:
        return
    from .streamed import stream_series

    recent = data.timestamps >= report["validation_start"]
    first = max(0, int(np.argmax(recent)) - ensemble.window)  # the recent points, with a window of history
    decided = stream_series(ensemble, data.timestamps[first:], data.values[first:], chunk=4096)
    before = int(data.flagged[recent].sum())
    after = int(decided.flags[decided.timestamps >= report["validation_start"]].sum())
    report["recent_flags"], report["recent_flags_before"] = after, before
    if after > before or (after == before and not learned_cycle):
        raise ValueError(f"the new models flagged {after} recent points, the models in use {before}: "
                         "keeping the models in use")


def _root_of(run: Path) -> str | None:
    """Return the run a refit run was refitted from (following refits of refits), or ``None``."""
    import json

    try:
        manifest = json.loads((run / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("data", {}).get("refit_of")


class Refitter:
    """Retrains one stream's models when asked; :meth:`poll` hands back the new ensemble when it is ready."""

    def __init__(self, config: Config, models_dir: str | Path | None = None, parent: str = "",
                 trained_on: int = 0, background: bool = True, move_latest: bool = True):
        """``config``: the settings of the run being refitted; ``models_dir``: where refits are saved
        (``None``: a temporary folder, removed once loaded); ``parent``: the run the stream started
        with; ``trained_on``: the points its models learned from."""
        self.config = config
        self.models_dir = str(models_dir) if models_dir else None
        self.parent = parent
        self.trained_on = trained_on
        self.background = background
        self.move_latest = move_latest
        self._executor: ProcessPoolExecutor | None = None
        self._loader: ThreadPoolExecutor | None = None
        self._training: Future | None = None
        self._loading: Future | None = None
        self._started = 0.0
        self._ready = None  # an inline refit's result, swapped in at the next poll
        self.refits = 0  # swapped in
        self.failures: list[str] = []
        self.abandoned = 0  # still training when the stream ended
        self.last_run = ""

    @property
    def busy(self) -> bool:
        """Whether a refit is training or loading."""
        return self._training is not None or self._loading is not None or self._ready is not None

    def submit(self, ensemble, data: RefitData) -> None:
        """Start retraining on ``data`` with ``ensemble``'s period and grid (ignored while one is under way)."""
        if self.busy:
            return
        logger.info("refit: retraining the models on %d recent points (%s)", len(data.values), data.reason)
        self._started = time.perf_counter()
        # a period the models lack may show in the longer history: look for one (a known one is kept)
        args = (self.config, data, ensemble.period or None, ensemble.grid, self.models_dir, self.parent,
                self.move_latest)
        if not self.background:
            from .signals import StopRequested, interruptible, stop_requested

            try:
                with interruptible():  # a stop signal drops the refit, not the points already scored
                    self._ready = self._load(train_refit(*args))
            except StopRequested:
                self._failed("stopped before it finished")
            except Exception as exc:
                if stop_requested():  # the stop landed inside a library that turned it into another error
                    self._failed("stopped before it finished")  # (TensorFlow's import, half done: AttributeError)
                elif isinstance(exc, ValueError):  # too little clean history, say: try again later
                    self._failed(str(exc))
                else:
                    raise
            return
        if self._executor is None:
            self._executor = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=_quiet_child)
        self._training = self._executor.submit(train_refit, *args)

    def poll(self):
        """Return ``(ensemble, report)`` of a finished refit to swap in now, else ``None``; never blocks."""
        if self._ready is not None:
            ready, self._ready = self._ready, None
            return self._swapped(ready)
        if self._training is not None and self._training.done():
            training, self._training = self._training, None
            try:
                result = training.result()
            except ValueError as exc:  # too little clean history, say: try again later
                self._failed(str(exc))
                return None
            except Exception as exc:  # a crashed child must not take the stream with it
                self._failed(f"{type(exc).__name__}: {exc}")
                return None
            if self._loader is None:
                self._loader = ThreadPoolExecutor(1, thread_name_prefix="anomaly-refit-load")
            self._loading = self._loader.submit(self._load, result)  # ONNX sessions: off the scoring thread
        if self._loading is not None and self._loading.done():
            loading, self._loading = self._loading, None
            try:
                return self._swapped(loading.result())
            except (OSError, ValueError, KeyError) as exc:
                self._failed(f"cannot load the refitted run: {exc}")
        return None

    def _load(self, result: tuple[str, dict]):
        from ..model.runs import load_run

        run, report = result
        ensemble = load_run(Path(run))[0]  # verified: the file is read back as the child wrote it
        probe = np.zeros(ensemble.window)  # scoring once opens the ONNX sessions here, not on the stream
        ensemble.raw_scores(probe, np.arange(ensemble.window))
        if self.models_dir is None:  # nowhere to keep it: it lives on in memory only
            shutil.rmtree(Path(run).parent, ignore_errors=True)
            run = ""
        return ensemble, report, run

    def _swapped(self, ready):
        ensemble, report, run = ready
        self.refits += 1
        self.trained_on = report["points"]
        self.last_run = run
        logger.info("refit: new models in use%s, trained on %d points in %.0f s (false-alarm rate %.2g on "
                    "held-out points)", f" ({Path(run).name})" if run else "", report["points"],
                    time.perf_counter() - self._started, report["measured_far"])
        return ensemble, report

    def _failed(self, why: str) -> None:
        self.failures.append(why)
        logger.warning("refit: skipped: %s", why)

    def close(self) -> None:
        """Stop: a refit still training is abandoned (its run is never half-written: see :mod:`anomaly.model.runs`)."""
        # an inline refit finished after the last point is not "still training": it was just never needed
        self.abandoned += int(self._training is not None or self._loading is not None)
        if self._executor is not None:
            processes = list((getattr(self._executor, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()  # training can take a while; nothing of it is needed any more
            for process in processes:
                process.join(timeout=10)
            # waiting lets the executor's manager thread see its workers gone and end now, not at exit
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._loader is not None:
            self._loader.shutdown(wait=True)
            self._loader = None
        self._training = self._loading = self._ready = None
