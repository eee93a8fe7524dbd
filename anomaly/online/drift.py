"""Concept drift: ADWIN's test for a change in the mean of a stream (Bifet & Gavaldà, 2007).

The window holds the most recent values (at most ``max_window``). Every ``clock`` values,
every split of the window into an older part W0 (``n0`` values) and a newer part W1
(``n1`` values) is tested with ADWIN's bound:

    |mean(W0) - mean(W1)| > sqrt(2 var ln(2/d) / m) + 2 ln(2/d) / (3 m)

Here ``m = 1 / (1/n0 + 1/n1)``, ``var`` is the window's variance and ``d = delta / n``
(Bernstein's inequality with a union over the splits). On a change, the values before the
most recent split that still differs are dropped, so the window holds the new regime only.
As in ADWIN2, whose buckets grow exponentially, only O(log window) splits are tested: the
newer part's sizes grow by 10% from ``min_side``. A check comes every ``clock`` values,
or every 1/16 of the window when that is longer, so the detection delay is at most 1/16
of the window beyond ADWIN's. river's ADWIN would do, but importing it takes a second (it brings
scikit-learn).

>>> import numpy as np
>>> adwin = Adwin(delta=0.002)
>>> changes = adwin.update(np.r_[np.zeros(500), np.ones(500)] + np.random.default_rng(0).normal(0, 0.5, 1000))
>>> len(changes), 500 <= changes[0] < 560
(1, True)
"""

from __future__ import annotations

import numpy as np


class Adwin:
    """ADWIN's change detector over a bounded window (see the module)."""

    def __init__(self, delta: float = 0.002, clock: int = 32, max_window: int = 5000, min_side: int = 16,
                 dtype=np.float64):
        """``dtype``: of the values kept (float32: half the memory, for many series; the tests sum in float64)."""
        if not 0 < delta < 1:
            raise ValueError(f"adwin: delta must be in (0, 1), got {delta}")
        self.delta, self.clock, self.max_window, self.min_side = delta, clock, max_window, min_side
        self.dtype = np.dtype(dtype)
        self._room = max_window + max(max_window // 16, 64)  # the most the buffer grows to: compacted when full
        self._buffer = np.empty(min(self._room, 64), dtype=self.dtype)  # the window is _buffer[_start:_end]
        self._start = self._end = 0
        self._until_check = clock  # values to take before the next test: set at each test, so the
        # schedule depends on the stream alone, not on how it is handed over

    @property
    def window(self) -> np.ndarray:
        """The values since the last change (at most ``max_window``), oldest first."""
        return self._buffer[self._start:self._end]

    @property
    def width(self) -> int:
        return self._end - self._start

    def state(self) -> tuple[dict, dict]:
        """Return ``(arrays, meta)``: the window and the test schedule (see :mod:`anomaly.online.state`)."""
        return {"window": self.window.copy()}, {"until_check": self._until_check}

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Go on from :meth:`state`'s output."""
        window = np.asarray(arrays["window"], dtype=self.dtype)[-self.max_window:]
        if len(window) > len(self._buffer):
            self._buffer = np.empty(min(self._room, max(2 * len(window), 64)), dtype=self.dtype)
        self._buffer[:len(window)] = window
        self._start, self._end = 0, len(window)
        self._until_check = int(meta["until_check"])

    def update(self, values: np.ndarray) -> list[int]:
        """Add ``values`` in order; return the indices (into ``values``) at which a change was detected."""
        values = np.asarray(values, dtype=np.float64)
        changes, start = [], 0
        while start < len(values):
            take = min(len(values) - start, self._until_check)
            self._append(values[start:start + take])
            self._until_check -= take
            start += take
            if self._until_check == 0:
                if self._cut():
                    changes.append(start - 1)
                self._until_check = max(self.clock, self.width // 16)
        return changes

    def _append(self, values: np.ndarray) -> None:
        out_of_room = self._end + len(values) > len(self._buffer)
        if out_of_room and len(self._buffer) < self._room:  # room grows (many streams stay small)
            grown = np.empty(min(self._room, max(2 * len(self._buffer), self.width + len(values))), dtype=self.dtype)
            grown[:self.width] = self.window
            self._buffer, self._start, self._end = grown, 0, self.width
        if self._end + len(values) > len(self._buffer):  # compact: keep the newest max_window values
            keep = self.window[-(self.max_window - len(values)):] if self.max_window > len(values) else self.window[:0]
            self._buffer[:len(keep)] = keep
            self._start, self._end = 0, len(keep)
        self._buffer[self._end:self._end + len(values)] = values[-self.max_window:]
        self._end += min(len(values), self.max_window)
        self._start = max(self._start, self._end - self.max_window)

    def _cut(self) -> bool:
        """Test every split; on a change drop the older values and return True."""
        w = self.window
        n = len(w)
        if n < 2 * self.min_side:
            return False
        newer = np.unique(np.round(self.min_side * 1.1 ** np.arange(
            int(np.log((n - self.min_side) / self.min_side) / np.log(1.1)) + 1)).astype(np.int64))
        split = n - newer[newer <= n - self.min_side]  # sizes of the older part
        total = np.cumsum(w, dtype=np.float64)
        older = total[split - 1]
        mean0 = older / split
        mean1 = (total[-1] - older) / (n - split)
        m = 1.0 / (1.0 / split + 1.0 / (n - split))
        log_term = np.log(2.0 * n / self.delta)
        bound = np.sqrt(2.0 * w.var(dtype=np.float64) * log_term / m) + 2.0 * log_term / (3.0 * m)
        differs = np.flatnonzero(np.abs(mean0 - mean1) > bound)
        if len(differs) == 0:
            return False
        self._start += int(split[differs].max())  # keep only what follows the newest change
        return True
