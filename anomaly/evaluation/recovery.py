"""How fast the stream recovers from a sudden level shift: false alarms by distance from the shift.

    python -m anomaly.evaluate drift --models models      # --help for the options

A simulated stream with drift events (level shifts that are *not* anomalies) and injected
anomalies continues where the run's training data ended, and goes through the runner
``stream.py`` uses. Around each sudden shift, normal points are bucketed by how many points
after the shift they came, and each bucket's false-alarm rate is pooled over all shifts.
The recovery bound is where the rate stays within twice the target for good. Anomalies
injected after a shift measure whether adaptation made the stream blind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..simulate import ANOMALY_KINDS, simulate
from .metrics import clean_normal

EDGES = (0, 25, 50, 100, 150, 250, 500, 1000, 2000, 3000)  # points after a sudden shift
AFTER = 3000  # anomalies starting this many points after a shift or fewer are "after the shift"


@dataclass
class Recovery:
    """False alarms after sudden shifts, pooled over all of them, and the detection of later anomalies."""

    alpha: float  # the target false-alarm rate
    shifts: int  # sudden level shifts in the stream
    buckets: list[tuple[int, int]]  # [start, end) points after a shift
    normal: list[int]  # normal points in each bucket, all shifts together
    false_alarms: list[int]  # of those, flagged
    events: int  # anomalies injected within AFTER points after a shift
    detected: int  # of those, flagged inside the event or the `grace` points after it
    overall_far: float  # flagged fraction of all clean normal points of the stream

    @property
    def rates(self) -> list[float]:
        """Return each bucket's false-alarm rate (flagged fraction of its normal points; NaN when empty)."""
        return [f / n if n else float("nan") for f, n in zip(self.false_alarms, self.normal)]

    @property
    def recovered_after(self) -> int | None:
        """Return the points after a shift from which every bucket is within twice the target (``None``: never)."""
        for i in range(len(self.buckets)):
            if all(not (r > 2 * self.alpha) for r in self.rates[i:]):  # NaN (empty) counts as within
                return self.buckets[i][0]
        return None

    @property
    def recall(self) -> float:
        """Return the detected fraction of the anomalies after shifts (NaN when there were none)."""
        return self.detected / self.events if self.events else float("nan")

    def format(self) -> str:
        """Return a table of the buckets and the two headline numbers, for people."""
        lines = [f"{self.shifts} sudden level shifts; target false-alarm rate {self.alpha:g}",
                 f"{'points after shift':>20}  {'normal points':>13}  {'flagged':>7}  {'rate':>8}  {'/ target':>8}"]
        for (start, end), n, f, rate in zip(self.buckets, self.normal, self.false_alarms, self.rates):
            lines.append(f"{f'{start}-{end}':>20}  {n:>13,}  {f:>7}  {rate:>8.4f}  {rate / self.alpha:>8.1f}")
        after = self.recovered_after
        lines.append(f"within 2x the target from {after} points after a shift on" if after is not None
                     else "never back within 2x the target")
        lines.append(f"anomalies injected after a shift: {self.detected}/{self.events} detected "
                     f"(event recall {self.recall:.2f}); whole stream false-alarm rate {self.overall_far:.4f}")
        return "\n".join(lines)


def drift_recovery(ensemble, points: int, seed: int, start_index: int, adapt=None, refitter=None,
                   grace: int = 5) -> Recovery:
    """Stream ``points`` simulated points with drift and anomalies (after ``start_index``); return the recovery.

    ``adapt`` and ``refitter`` are as for :func:`~anomaly.online.streamed.stream_series` (``None``:
    the ensemble stays as given). A normal point counts only when no anomaly is inside the
    shortest detector window before it (a windowed detector may still react to one).
    """
    from ..online.streamed import stream_series

    series = simulate(points, seed=seed, anomalies=True, drift=True, start_index=start_index)
    streamed = stream_series(ensemble, series.timestamps, series.values, adapt=adapt, refitter=refitter)
    if len(streamed.flags) != points:
        raise ValueError(f"{points - len(streamed.flags)} simulated points were not scored")
    normal = clean_normal(series.labels, ensemble.shortest_window)
    shifts = [e.start for e in series.events if e.kind == "sudden_drift"]
    buckets = list(zip(EDGES[:-1], EDGES[1:]))
    counts, flagged = np.zeros(len(buckets), dtype=int), np.zeros(len(buckets), dtype=int)
    for shift in shifts:
        for i, (start, end) in enumerate(buckets):
            part = slice(min(shift + start, points), min(shift + end, points))
            counts[i] += int(normal[part].sum())
            flagged[i] += int((streamed.flags[part] & normal[part]).sum())
    anomalies = [e for e in series.events if e.kind in ANOMALY_KINDS
                 and any(0 <= e.start - shift < AFTER for shift in shifts)]
    detected = sum(bool(streamed.flags[e.start:e.end + grace].any()) for e in anomalies)
    return Recovery(ensemble.alpha, len(shifts), buckets, counts.tolist(), flagged.tolist(), len(anomalies),
                    detected, float(streamed.flags[normal].mean()))
