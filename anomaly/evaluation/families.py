"""The false-alarm promise and recall on every family of the simulator (:mod:`anomaly.families`).

For each family, seed and head length, a run trains on that many normal points of the family
(as ``train.py`` would on a user's history: 750 points as NAB's probation, or two weeks), then
streams a fresh stream of the family with its anomalies, continuing after the history, through
the runner ``stream.py`` uses (adapting and refitting as the settings say; refits inline, so the
numbers do not depend on timing). It counts each kind's events found (a flag inside the event or
in the ``GRACE`` points after it) and the normal points flagged by how far after an event's end
they come, and, over all normal points at least ``CLEAR`` points after any event (or before the
first), the flagged share over the target: the false-alarm promise, where a detector that keeps
it reads 1x.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

from ..families import family_kinds
from .metrics import AfterEvents, after_events

GRACE = 5  # points after an event's end in which a flag still finds it
CLEAR = 10  # normal points this far after any event are held to the false-alarm promise
STREAM_SEED = 1000  # the stream's seed is the history's plus this: its noise is not the history's again
TWO_WEEKS = 14  # days of history of the long head


@dataclass(frozen=True)
class FamilyRun:
    """One trained run's stream of a family: events found per kind and flagged normal points."""

    family: str
    seed: int
    head: int  # points of history trained on
    events: dict[str, int]  # kind -> events in the scored stream
    found: dict[str, int]  # kind -> of them found
    after: AfterEvents  # normal points by distance after an event's end, and their flags
    clear: int  # normal points at least CLEAR after any event (or before the first)
    clear_flagged: int
    alpha: float
    seconds: float
    trained: str = ""  # why training failed ("" when it did not: then nothing is flagged)

    @property
    def far_ratio(self) -> float:
        """Flagged share of the normal points clear of events, over the target rate (1.0: on target)."""
        return self.clear_flagged / self.clear / self.alpha if self.clear else float("nan")


def heads(config) -> tuple[int, int]:
    """Return the short head (750 points, NAB's probation) and the long one (two weeks of points)."""
    return 750, TWO_WEEKS * 86_400 // config.simulator.interval_s


def family_run(family: str, seed: int, head: int, points: int, config, adapt: bool = True,
               refit: bool = True) -> FamilyRun:
    """Train on ``head`` normal points of ``family`` (seed ``seed``) and stream ``points`` more with anomalies;
    return what was found and flagged (see the module)."""
    from ..model.training import train
    from ..online.refit import Refitter
    from ..online.streamed import stream_series
    from ..simulate import simulate

    started = time.perf_counter()
    config = dataclasses.replace(config, simulator=dataclasses.replace(config.simulator, family=family))
    history = simulate(head, seed=seed, config=config.simulator)
    stream = simulate(points, seed=seed + STREAM_SEED, anomalies=True, start_index=head, config=config.simulator)
    kinds = family_kinds(family)
    try:
        ensemble, report = train(history.timestamps, history.values, config)
    except ValueError as exc:
        flags, why, window = np.zeros(points, dtype=bool), str(exc), 1
    else:
        settings = dataclasses.replace(config.adapt, refit=refit) if adapt else None
        refitter = (Refitter(config, trained_on=report["points"], background=False)
                    if settings is not None and refit else None)
        streamed = stream_series(ensemble, stream.timestamps, stream.values, adapt=settings, refitter=refitter)
        if len(streamed.flags) != points:
            raise RuntimeError(f"{points - len(streamed.flags)} simulated points were not scored")
        flags, why, window = streamed.flags, "", ensemble.window
        flags = flags.copy()
        flags[:window - 1] = False  # warm-up: not scored
    labels = stream.labels.copy()
    labels[:window - 1] = False
    scored = [e for e in stream.events if e.start >= window]
    events = {kind: sum(e.kind == kind for e in scored) for kind in kinds}
    found = {kind: sum(bool(flags[e.start:e.end + GRACE].any()) for e in scored if e.kind == kind)
             for kind in kinds}
    clear = _clear_of_events(stream.labels, CLEAR)
    clear[:window - 1] = False
    return FamilyRun(family, seed, head, events, found, after_events(flags[window - 1:], labels[window - 1:]),
                     int(clear.sum()), int((flags & clear).sum()), config.calibration.target_far,
                     time.perf_counter() - started, why)


def _clear_of_events(labels: np.ndarray, distance: int) -> np.ndarray:
    """Return ``(n,)`` bool: normal points at least ``distance`` points after the end of any event, or before the
    first one."""
    labels = np.asarray(labels, dtype=bool)
    index = np.arange(len(labels))
    last = np.maximum.accumulate(np.where(labels, index, -1))
    return ~labels & ((last < 0) | (index - last >= distance))


def _job(job) -> FamilyRun:
    family, seed, head, points, config, adapt, refit = job
    return family_run(family, seed, head, points, config, adapt, refit)


def _quiet_worker() -> None:
    """A worker process of :func:`evaluate_families`: one scoring thread (the workers share the cores)."""
    import logging

    os.environ["ANOMALY_SCORING_THREADS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    logging.getLogger("anomaly").setLevel(logging.WARNING)


def evaluate_families(families, seeds, head_lengths, points: int, config, adapt: bool = True, refit: bool = True,
                      workers: int = 1, done=None) -> list[FamilyRun]:
    """Return a :class:`FamilyRun` for every family, seed and head length, run in ``workers`` processes.

    ``done``: called with each run as it ends (a progress bar)."""
    jobs = [(family, seed, head, points, config, adapt, refit)
            for family in families for head in head_lengths for seed in seeds]
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(_job(job))
            done and done(results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_quiet_worker) as pool:
        for result in pool.map(_job, jobs):
            results.append(result)
            done and done(result)
    return results


def format_families(runs: list[FamilyRun]) -> str:
    """Return the table of :func:`evaluate_families`: a row per family and head, recall of each kind, flagged
    normal points by distance after events and clear of them, over the target."""
    lines = []
    labels = runs[0].after.labels if runs else []
    groups: dict[tuple[str, int], list[FamilyRun]] = {}
    for run in runs:
        groups.setdefault((run.family, run.head), []).append(run)
    header = (f"{'family':10s} {'head':>5s} {'seeds':>5s} {'recall':>6s}" + "".join(f" {b:>7s}" for b in labels)
              + f" {'10+':>7s}  recall per kind")
    lines.append(header)
    for (family, head), members in groups.items():
        events = {k: sum(m.events[k] for m in members) for k in members[0].events}
        found = {k: sum(m.found[k] for m in members) for k in members[0].events}
        total = sum(events.values())
        recall = sum(found.values()) / total if total else float("nan")
        after = members[0].after
        for m in members[1:]:
            after = after + m.after
        alpha = members[0].alpha
        clear = sum(m.clear for m in members)
        clear_flagged = sum(m.clear_flagged for m in members)
        far = clear_flagged / clear / alpha if clear else float("nan")
        kinds = "  ".join(f"{k} {found[k]}/{events[k]}" for k in events)
        untrained = sum(bool(m.trained) for m in members)
        lines.append(f"{family:10s} {head:5d} {len(members):5d} {recall:6.2f}"
                     + "".join(f" {r / alpha:6.1f}x" for r in after.rates) + f" {far:6.1f}x  {kinds}"
                     + (f"  ({untrained} not trained)" if untrained else ""))
    return "\n".join(lines)


def families_summary(runs: list[FamilyRun]) -> list[dict]:
    """Return every run as a plain dict (for a JSON file)."""
    return [{**dataclasses.asdict(run), "after": {"labels": run.after.labels, "normal": run.after.normal,
                                                  "flagged": run.after.flagged}, "far_ratio": run.far_ratio}
            for run in runs]
