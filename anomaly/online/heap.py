"""Freed memory handed back to the system now and then, so a long stream's resident memory stays what it holds.

glibc's malloc gives memory back to the system only from the top of its heap. Many series
recalibrate and thin their histories again and again, each time freeing arrays of a few KB
between others still in use; the freed pages stay resident. Measured at steady state (200
series, 6,000 points each, ``benchmarks/many_series_bench.py``): 82-90 KB a series resident
against 55-64 KB once ``malloc_trim`` had handed the free pages back, and the gap grows with
the stream: series recalibrating in one tick left 8-19 KB a series more at once. A
hand-back every 10 seconds still read 69-72 KB a series resident against 49-55; once a
second, 61-66. What is left above is what the next ticks touch again (a tick of 100 series
about 12 KB a series of temporaries). So :class:`HeapKeeper` calls ``malloc_trim`` at most
once a second, where the C library has it (glibc); elsewhere it does nothing. It costs
about 4 ms at 10,000 series (a tick of them, one point each, about 116 ms): 0.4% of a
second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable

HAND_BACK_EVERY = 1.0  # seconds between two hand-backs, at most


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """Return glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def hand_back() -> bool:
    """Hand the heap's free pages back to the system now; return whether the C library could (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapKeeper:
    """Calls ``hand_back`` (default: :func:`hand_back`) when :meth:`tick` comes ``every`` seconds or more after the
    last call that did (``clock``: seconds, monotonic)."""

    def __init__(self, every: float = HAND_BACK_EVERY, clock: Callable[[], float] = time.monotonic,
                 hand_back: Callable[[], bool] = hand_back):
        self.every = every
        self._clock = clock
        self._hand_back = hand_back
        self._last = clock()
        self.handed_back = 0  # times memory was handed back

    def tick(self, now: float | None = None) -> bool:
        """Hand freed memory back if it is time (``now``: the clock's reading, read when ``None``); return
        whether it did."""
        now = self._clock() if now is None else now
        if now - self._last < self.every:
            return False
        self._last = now
        self.handed_back += bool(self._hand_back())
        return True
