"""The Numenta Anomaly Benchmark: its score, from the paper's definition, and its protocol.

Lavin & Ahmad (2015). For one file and one detector's flags:

- each label window scores its earliest flag, ``A_TP * s(y) / s(-1)``, where ``y`` runs from
  -1 at the window's first point to about 0 at its last. A window without a flag scores
  ``-A_FN``.
- every flag outside the windows scores ``A_FP * s(y)``. Here ``y`` is the distance past
  the end of the previous window, in window widths, so the penalty grows toward the full
  ``-A_FP``. A flag before any window costs the full ``-A_FP``.
- flags in the probation period are ignored: the first 15% of a file, at most 750 rows. The
  detector learns from it.

``s(y) = 2 / (1 + exp(5 y)) - 1``, and -1 from ``y = 3`` on. Summed over files, the score
is normalised between a detector that flags nothing (0) and one that flags every window at
its first point (100): ``100 (S - S_null) / (S_perfect - S_null)``.

NAB's own leaderboard tunes each detector's threshold on the corpus it is scored on; here
the detectors keep the threshold they were calibrated to (their target false-alarm rate),
as a user would run them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.data import parse_timestamp


@dataclass(frozen=True)
class Profile:
    """NAB's application profile: weights of true positives, false positives and false negatives."""

    tp: float
    fp: float
    fn: float


PROFILES = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


def probation(rows: int) -> int:
    """Return the probation length of a file of ``rows`` rows: 15%, at most 750 rows."""
    return min(int(math.floor(0.15 * rows)), 750)


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """Return NAB's ``2 / (1 + exp(5 y)) - 1``: about 0.987 at y = -1, 0 at 0, -1 from y = 3 on."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(y >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0))) - 1.0)


def window_bounds(timestamps: np.ndarray, windows: list[list[str]]) -> list[tuple[int, int]]:
    """Return each label window as inclusive ``(first, last)`` row indices of ``timestamps`` (epoch s)."""
    bounds = []
    for start, end in windows:
        first = int(np.searchsorted(timestamps, parse_timestamp(start), side="left"))
        last = int(np.searchsorted(timestamps, parse_timestamp(end), side="right")) - 1
        if first <= last:
            bounds.append((first, last))
    return bounds


@dataclass(frozen=True)
class FileScore:
    """One file's raw NAB score and what normalises it (all in the profile's weights)."""

    raw: float
    null: float  # flagging nothing: -A_FN per window
    perfect: float  # every window flagged at its first point: A_TP per window
    detected: int  # windows with a flag
    windows: int
    false_positives: int  # flags outside the windows, after probation


def score_file(flags: np.ndarray, bounds: list[tuple[int, int]], profile: Profile) -> FileScore:
    """Return the NAB score of boolean ``flags`` ``(n,)`` against inclusive window ``bounds``."""
    flags = np.asarray(flags, dtype=bool).copy()
    flags[:probation(len(flags))] = False
    inside = np.zeros(len(flags), dtype=bool)
    for first, last in bounds:
        inside[first:last + 1] = True
    scored = [(a, b) for a, b in bounds if b >= probation(len(flags))]  # a window inside probation: no TP, no FN
    raw, detected = 0.0, 0
    for first, last in scored:
        hits = np.flatnonzero(flags[first:last + 1])
        if len(hits):
            detected += 1
            y = -(last - (first + hits[0]) + 1) / (last - first + 1)
            raw += profile.tp * float(scaled_sigmoid(y)) / float(scaled_sigmoid(-1.0))
        else:
            raw -= profile.fn
    outside = np.flatnonzero(flags & ~inside)
    if len(outside):
        ends = np.array([b for _, b in bounds], dtype=np.int64)
        widths = np.array([b - a + 1 for a, b in bounds], dtype=np.float64)
        previous = np.searchsorted(ends, outside, side="right") - 1  # the last window ending before
        y = np.full(len(outside), 3.0)
        after = previous >= 0
        y[after] = (outside[after] - ends[previous[after]]) / np.maximum(widths[previous[after]] - 1, 1)
        raw += profile.fp * float(scaled_sigmoid(y).sum())
    return FileScore(raw, -profile.fn * len(scored), profile.tp * len(scored), detected, len(scored), len(outside))


def normalised(scores: list[FileScore]) -> float:
    """Return the corpus NAB score of per-file scores: 0 = flags nothing, 100 = perfect."""
    raw, null, perfect = (sum(getattr(s, k) for s in scores) for k in ("raw", "null", "perfect"))
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


def corpus_files(root: Path) -> tuple[list[Path], dict[str, list[list[str]]]]:
    """Return the data files of a NAB-style ``root`` (``data/<category>/*.csv``) and its label windows.

    Raises ``FileNotFoundError`` naming what is missing.
    """
    root = Path(root)
    labels = root / "labels" / "combined_windows.json"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found: a NAB-style folder holds data/<category>/*.csv "
                                "and labels/combined_windows.json")
    files = sorted((root / "data").glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no data/<category>/*.csv files under {root}")
    return files, json.loads(labels.read_text())


HALVES = ("A", "B")  # A: the half verdict changes are decided on; B: the half they are reported on as well


def halves(files: list[Path]) -> dict[str, str]:
    """Return ``"category/name.csv" -> "A" or "B"``: the corpus split in two fixed halves by a rule, the file
    names in sorted order taken alternately (the first is in A).

    A change to how verdicts are made is chosen on half A (and the simulator's families) and kept only where
    half B, which did not tune it, does not get worse."""
    ordered = sorted(files, key=lambda path: path.name)
    return {f"{path.parent.name}/{path.name}": HALVES[i % 2] for i, path in enumerate(ordered)}
