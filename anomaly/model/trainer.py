"""The training job behind ``train.py`` (and the first ``stream.py``): data in, a saved run out."""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager
from pathlib import Path

from .. import progress
from ..config import Config
from ..errors import UserError

logger = logging.getLogger("anomaly")


def _check_writable(models: str | Path) -> None:
    """Raise :class:`UserError` when runs cannot be saved in ``models``: before minutes of training, not after."""
    from .runs import check_writable

    try:
        check_writable(models)
    except OSError as exc:
        raise UserError(f"cannot save runs in {models}: {exc.strerror or exc}") from None


@contextmanager
def _reading(data: str | Path):
    """Turn the errors of reading the CSV ``data`` into one-line :class:`UserError` messages."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"cannot read {data}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {data}: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _log_skipped(history, data: str | Path) -> None:
    """Log the rows of ``data`` that could not be read, by reason (nothing when there were none)."""
    if history.skipped:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(history.reasons.items()))
        logger.warning("skipped %d unreadable rows of %s (%s)", history.skipped, data, reasons)


def train_and_save(config: Config, models: str | Path, seed: int | None = None, data: str | None = None,
                   head: int | None = None, time_column: str = "timestamp",
                   value_column: str = "value", time_format: str = "auto", feedback: str | None = None) -> Path:
    """Train on ``data`` (or simulated normal data) and save a run; return the run folder.

    ``feedback``: a labels file (:mod:`anomaly.feedback`) applied to the history.
    """
    from ..feedback import read_feedback
    from ..io.sources import read_csv
    from ..simulate import simulate
    from .runs import write_run
    from .training import train

    seed = config.training.seed if seed is None else seed
    _check_writable(models)
    if data:
        with _reading(data):
            history = read_csv(data, time_column, value_column, head, time_format)
        _log_skipped(history, data)
        timestamps, values, source = history.timestamps, history.values, str(data)
        logger.info("training on %d rows of %s", len(values), data)
    else:
        n = config.training.n_points
        series = simulate(n, seed=seed, config=config.simulator)
        timestamps, values, source = series.timestamps, series.values, "simulator"
        logger.info("training on %d simulated normal points (seed %d)", n, seed)
    labels = []
    if feedback:
        try:
            labels = read_feedback(feedback)
        except (OSError, ValueError) as exc:
            raise UserError(f"--feedback: {exc}") from None
    try:
        ensemble, report = train(timestamps, values, config, seed, labels=labels)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    report["data"] = {"source": source, "head": head, "seed": seed, "feedback": feedback}
    report["detectors"] = list(ensemble.names)
    if labels:
        logger.info("feedback: %d labels; %d points left out as anomalies, %d false-alarm points taught",
                    len(labels), report["excluded"], report["taught_false_alarms"])
    run = write_run(models, ensemble, report)
    logger.info("trained in %.1f s; false-alarm rate %.2g measured on held-out data (target %.2g)",
                report["train_seconds"], report["measured_far"], report["target_far"])
    return run


def _train_each(histories: dict, config: Config, seed: int) -> tuple[dict, dict, dict]:
    """Train one complete ensemble per series; return the ensembles, their reports and the untrained series."""
    from .training import train

    ensembles, reports, untrained = {}, {}, {}
    with progress.task("series", total=len(histories), unit="series") as bar:
        for number, (key, history) in enumerate(histories.items(), start=1):
            bar.describe(f"series {key}")
            try:
                ensemble, report = train(history.timestamps, history.values, config, seed)
            except ValueError as exc:
                untrained[key] = str(exc)
                logger.warning("[%d/%d] series %s not trained: %s", number, len(histories), key, exc)
                continue
            finally:
                bar.advance()
            ensembles[key] = ensemble
            reports[key] = {name: report[name] for name in ("points", "period", "measured_far", "train_seconds")}
            logger.info("[%d/%d] series %s: %d points, period %s, false-alarm rate %.2g on held-out data",
                        number, len(histories), key, report["points"], report["period"] or "none",
                        report["measured_far"])
    return ensembles, reports, untrained


def train_series_and_save(config: Config, models: str | Path, data: str, series_column: str,
                          seed: int | None = None, head: int | None = None, time_column: str = "timestamp",
                          value_column: str = "value", time_format: str = "auto",
                          per_series_models: bool = False) -> Path:
    """Train every series of a CSV of many series into one run; return the run folder.

    By default the shape learners (autoencoders, forest) learn once from all series' windows
    and each series keeps its own scaling, period, seasonal and forecasting detectors and
    calibration (:func:`~anomaly.model.training.train_pooled`); ``per_series_models``: one complete
    ensemble per series instead. ``head`` counts each series' rows. A series that cannot be
    trained (too short, say) is logged and recorded in the manifest's ``untrained`` with the
    reason; the others are saved. Raises :class:`UserError` when none can be trained.
    """
    import time

    from ..io.sources import read_series
    from .runs import write_run
    from .training import train_pooled

    seed = config.training.seed if seed is None else seed
    started = time.perf_counter()
    _check_writable(models)
    with _reading(data):
        histories, unreadable = read_series(data, series_column, time_column, value_column, head, time_format)
    _log_skipped(unreadable, data)
    if not per_series_models:
        logger.info("training the %d series of %s: shared shape models, each series its own calibration",
                    len(histories), data)
        ensembles, full_reports, untrained = train_pooled(
            {key: (h.timestamps, h.values) for key, h in histories.items()}, config, seed)
        reports = {key: {name: r[name] for name in ("points", "period", "measured_far", "train_seconds")}
                   for key, r in full_reports.items()}
        for key, why in untrained.items():
            logger.warning("series %s not trained: %s", key, why)
    else:
        logger.info("training one ensemble for each of the %d series of %s", len(histories), data)
        ensembles, reports, untrained = _train_each(histories, config, seed)
    if not ensembles:
        raise UserError(f"no series of {data} could be trained: "
                        + "; ".join(f"{key}: {why}" for key, why in list(untrained.items())[:3]))
    manifest = {
        "points": sum(r["points"] for r in reports.values()),
        "target_far": config.calibration.target_far,
        "measured_far": max(r["measured_far"] for r in reports.values()),
        "series_reports": reports, "untrained": untrained,
        "data": {"source": str(data), "head": head, "seed": seed, "series_column": series_column,
                 "per_series_models": per_series_models},
        "detectors": list(config.ensemble.detectors),
        "train_seconds": round(time.perf_counter() - started, 1),
        "config": dataclasses.asdict(config),
    }
    run = write_run(models, ensembles, manifest)
    logger.info("trained %d series in %.1f s%s", len(ensembles), manifest["train_seconds"],
                f"; {len(untrained)} not trained (see 'untrained' in {run.name}/manifest.json)" if untrained else "")
    return run
