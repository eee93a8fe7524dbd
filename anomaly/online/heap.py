"""Freed memory handed back to the system now and then, so a long stream's resident memory stays what it holds.

glibc's malloc gives memory back to the system only from the top of its heap. Many series
recalibrate and thin their histories again and again, each time freeing arrays of a few KB
between others still in use; the freed pages stay resident. Measured at steady state (200
series, 6,000 points each, thinned every 256 points, after a warm-up of 1,100 ticks, with
``benchmarks/many_series_bench.py`` as it then was): 82-90 KB a series resident against
55-64 KB once ``malloc_trim`` had handed the free pages back, and the gap grows with the
stream: series recalibrating in one tick left 8-19 KB a series more at once. A hand-back
every 10 seconds still read 69-72 KB a series resident against 49-55 (warmed up as long as
measured); once a second, 61-66. What is left above is what the next ticks touch again (a
tick of 100 series about 12 KB a series of temporaries). So :class:`HeapKeeper` calls
``malloc_trim`` at most once a second, where the C library has it (glibc); elsewhere it does
nothing. It costs about 4 ms at 10,000 series (a tick of them, one point each, about 116
ms): 0.4% of a second.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable

HAND_BACK_EVERY = 1.0  # seconds between two hand-backs, at most


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """Return glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS, Windows)."""
    try:
        # the symbols the process already has (libc's among them): no search for the library mid-stream
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


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
        self.handed_back = 0  # times it was time to hand memory back (whether or not the C library could)

    def tick(self, now: float | None = None) -> bool:
        """Hand freed memory back if it is time (``now``: the clock's reading, read when ``None``); return
        whether it did."""
        now = self._clock() if now is None else now
        if now < self._last:  # a clock set back: count from now, not from a time still to come
            self._last = now
        if now - self._last < self.every:
            return False
        self._last = now
        self.handed_back += 1
        self._hand_back()
        return True
