"""Adaptation: recalibrate on recent points judged normal, after drift and every so often.

A detector trained once alarms for ever after a lasting change (a noisier regime, a new
daily shape), or goes blind when its scores fall. The :class:`Adapter` keeps the last
``history`` points' raw detector scores and refits the calibration from them. Refitting
the calibration is cheap and exact: the models stay as they are.

- **Only normal points teach:** a point is admitted unless a point within ``margin`` points
  of it is confidently anomalous, that is, has a p-value below ``gate`` times the alarm
  threshold (1e-4 for the default 1e-3). An anomaly therefore never teaches the detector
  that it is normal. Marginal flags still teach: they are what a miscalibrated detector
  flags in bulk, and gating them too would keep it miscalibrated (measured on NAB: the
  flags' own exclusions left only the calm stretches to calibrate on).
- **A lasting change is not a burst:** alarms that go on for more than ``confirm`` points
  are the new normal. They are admitted, and the history before them is dropped.
- **Drift:** ADWIN watches the deseasoned input level and the calibrated evidence
  (``-log10 p``). A change in either calls for a recalibration at once, on the whole
  recent history. The history is not cut there: ADWIN's bound assumes independent values,
  so on smooth, autocorrelated metrics it fires often, and cutting each time left
  calibration with a few hundred points (measured on NAB: false alarms rose fivefold). The
  detectors look at shape, not level, so a new level alone does not need a new history.
- **When:** every ``every`` points, after a change, and whenever the admitted sample has
  doubled since the last recalibration (a short training head is soon outgrown), once
  ``min_points`` points are admitted. Decisions are taken only every ``step`` input points,
  so that a replay in blocks and a live stream adapt at the same points and decide alike. As in training, the older part of the admitted
  points calibrates each detector and the rest calibrates their combination.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from .calibration import Calibrator, combine
from .config import AdaptConfig
from .drift import Adwin
from .metrics import runs
from .records import DecisionBlock

logger = logging.getLogger(__name__)
GROUP = 16  # points averaged into each value ADWIN sees


class Adapter:
    """Watches one stream's decisions; :meth:`observe` returns a recalibrated ensemble when one is due."""

    def __init__(self, ensemble, settings: AdaptConfig | None = None):
        self.settings = s = settings or AdaptConfig()
        self.original = ensemble  # as trained: its calibration samples are pooled with recent ones
        # lingering flags come while an event is inside the shortest window; a wider margin keeps
        # too many ordinary points out and leaves calibration with only the quietest stretches
        self.margin = s.margin or min(d.window for d in ensemble.detectors.values())
        self.confirm = s.confirm or 2 * ensemble.window
        k = len(ensemble.names)
        self._raw = np.empty((0, k))
        self._flags = np.empty(0, dtype=bool)
        self._usable = np.empty(0, dtype=bool)
        self._since_refit = 0
        self._seen = 0  # input points observed (filled ones not counted)
        self._admitted_at_refit = 0  # admitted points the last recalibration had
        self._changed = False  # a change was seen and is not yet recalibrated for
        self._level, self._evidence = Adwin(s.delta), Adwin(s.delta)
        self._pending = np.empty((0, 2))  # level and evidence of points not yet in a group of GROUP
        self.recalibrations = 0
        self.changes = 0

    def observe(self, block: DecisionBlock, ensemble):
        """Take in a block of decisions; return a recalibrated copy of ``ensemble`` when due, else ``None``."""
        if len(block) == 0:
            return None
        usable = ~block.warmup if block.filled is None else ~block.warmup & ~block.filled
        keep = self.settings.history
        self._raw = np.concatenate([self._raw, block.raw])[-keep:]
        self._flags = np.concatenate([self._flags, block.p_value < self.settings.gate * block.alpha])[-keep:]
        self._usable = np.concatenate([self._usable, usable])[-keep:]
        self._since_refit += len(block)
        self._seen += len(block) - (0 if block.filled is None else int(block.filled.sum()))
        self._watch(block, ensemble, usable)
        if self._seen != self.boundary(self._seen - 1):  # decide only at fixed counts: replay and live alike
            return None
        self._lasting_change()
        admitted = self.admitted()
        count = int(admitted.sum())
        # young histories (a short training head, or just after a change) are recalibrated each
        # time the sample has doubled; then every `every` points
        due = self._since_refit >= self.settings.every or self._changed or count >= 2 * self._admitted_at_refit
        if not due or count < self.settings.min_points:
            return None
        self._since_refit, self._changed, self._admitted_at_refit = 0, False, count
        self.recalibrations += 1
        return recalibrated(ensemble, self._raw[admitted], self.original)

    def boundary(self, seen: int) -> int:
        """Return the first input count after ``seen`` at which the adapter may act.

        Every ``step`` points for 16 steps, then every 4 steps for 16 of those, then every 16
        steps: a young stream needs adapting most (NAB's files are a few thousand points),
        and each step is a scoring pass of its own (measured: 1024-point steps cost a
        third of replay speed). Replay cuts its blocks at these counts, so it adapts where a
        live stream does.
        """
        step, start = self.settings.step, 0
        while seen >= start + 16 * step and step < 16 * self.settings.step:
            start += 16 * step
            step *= 4
        return start + ((seen - start) // step + 1) * step

    def admitted(self) -> np.ndarray:
        """Return which of the kept points may teach the detector: none confidently anomalous nearby.

        When more than ``max_share`` of the kept points are confidently anomalous, all are
        admitted: anomalies are rare, and so common a pattern is the stream's own. Gating it
        would keep it out of calibration for ever, and each recalibration would make it look
        more anomalous still (measured on NAB's stepped series: 1 point in 5).
        """
        flags = self._flags & self._usable
        if flags.sum() > self.settings.max_share * self._usable.sum():
            return self._usable.copy()
        near = flags.copy()
        for start, end in runs(flags):  # dilate each run of flags by the margin, both ways
            near[max(0, start - self.margin):end + self.margin] = True
        return self._usable & ~near

    def _watch(self, block: DecisionBlock, ensemble, usable: np.ndarray) -> None:
        """Feed ADWIN the deseasoned level and the evidence of the block's usable points."""
        if not usable.any():
            return
        level = ensemble.deseasoned(block.timestamps[usable], block.values[usable])
        # capped at the threshold's evidence: ADWIN follows how often points come near it, not how
        # extreme each anomaly is (each would otherwise read as a change)
        evidence = np.minimum(-np.log10(np.maximum(block.p_value[usable], 1e-300)), -np.log10(block.alpha))
        # ADWIN reads means of GROUP consecutive points: 1/GROUP of the cost, and closer to the
        # independent values its bound assumes on autocorrelated metrics; groups are cut by
        # position in the stream, so detection does not depend on how points arrive
        self._pending = np.concatenate([self._pending, np.column_stack([level, evidence])])
        whole = len(self._pending) // GROUP * GROUP
        means = self._pending[:whole].reshape(-1, GROUP, 2).mean(axis=1)
        self._pending = self._pending[whole:]
        level_changes = self._level.update(means[:, 0])  # both detectors see every group
        evidence_changes = self._evidence.update(means[:, 1])  # (no short-circuit)
        if level_changes or evidence_changes:
            self._changed = True
            self.changes += len(level_changes) + len(evidence_changes)
            logger.info("drift: the %s changed; recalibrating", "input level" if level_changes else "evidence")

    def _lasting_change(self) -> None:
        """Alarms running longer than ``confirm`` points are a new normal: admit them, drop what precedes."""
        flags = self._flags & self._usable
        merged = flags.copy()
        for (_, end), (start, _) in zip(runs(flags)[:-1], runs(flags)[1:]):
            if start - end <= self.margin:
                merged[end:start] = True  # one alarm, with short pauses
        for start, end in runs(merged):
            if end - start > self.confirm:
                self._flags[start:end] = False
                self._drop_before(start)
                self._admitted_at_refit = 0
                self._changed = True
                self.changes += 1
                logger.info("drift: an alarm lasted %d points: taken as the new normal", end - start)
                return

    def _drop_before(self, index: int) -> None:
        self._raw, self._flags, self._usable = self._raw[index:], self._flags[index:], self._usable[index:]


def recalibrated(ensemble, raw: np.ndarray, original=None):
    """Return a copy of ``ensemble`` calibrated on ``raw`` ``(n, k)`` scores of normal points, in time order.

    The first third, pooled with the scores each detector was calibrated on in training
    (``original``: the trained ensemble), calibrates each detector; the rest calibrates their
    combination. Both samples are normal scores. Pooling them keeps one unusual recent
    stretch from collapsing a threshold (measured on NAB's noise-free series: thresholds
    fitted on a few hundred near-identical scores alarmed on float-level differences),
    while the recent sample soon outweighs a short training head.
    """
    cut = len(raw) // 3
    original = original or ensemble
    new = copy.copy(ensemble)
    new.calibrators_ = {name: Calibrator().fit(np.concatenate([original.calibrators_[name].sorted_, raw[:cut, i]]))
                        for i, name in enumerate(ensemble.names)}
    new.combined_ = Calibrator().fit(combine(new.detector_p_values(raw[cut:]), ensemble.combine))
    return new
