"""The training job behind ``train.py`` (and the first ``stream.py``): data in, a saved run out."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import Config
from .errors import UserError

logger = logging.getLogger("anomaly")


def train_and_save(config: Config, models: str | Path, seed: int | None = None, data: str | None = None,
                   head: int | None = None, time_column: str = "timestamp",
                   value_column: str = "value", time_format: str = "auto", feedback: str | None = None) -> Path:
    """Train on ``data`` (or simulated normal data) and save a run; return the run folder.

    ``feedback``: a labels file (:mod:`anomaly.feedback`) applied to the history.
    """
    from .sources import read_csv
    from .feedback import read_feedback
    from .runs import check_writable, write_run
    from .simulate import simulate
    from .training import train

    seed = config.training.seed if seed is None else seed
    try:  # before minutes of training, not after
        check_writable(models)
    except OSError as exc:
        raise UserError(f"cannot save runs in {models}: {exc.strerror or exc}") from None
    if data:
        try:
            history = read_csv(data, time_column, value_column, head, time_format)
        except FileNotFoundError:
            raise UserError(f"cannot read {data}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {data}: {exc}") from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if history.skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(history.reasons.items()))
            logger.warning("skipped %d unreadable rows of %s (%s)", history.skipped, data, reasons)
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
