"""The picture: data in blue, anomalies in red, the expected band shaded.

:class:`LivePlot` redraws a window a few times a second while points stream in, or, given
a PNG path (headless machines), keeps the points and renders the file when closed.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

from .records import Decision, DecisionBlock

REDRAW_S = 0.25


def has_display() -> bool:
    """Return whether a window can be opened (a display, or a desktop OS)."""
    return os.name == "nt" or os.uname().sysname == "Darwin" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class LivePlot:
    """Keeps the last ``points`` decisions and draws them live or into ``png``."""

    def __init__(self, points: int = 500, png: str | Path | None = None, title: str = "anomaly"):
        import matplotlib

        if png is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.png = Path(png) if png is not None else None
        self.title = title
        self.buffer: deque[Decision] = deque(maxlen=points)
        self.fig, self.ax = plt.subplots(figsize=(11, 4.5))
        self._last_draw = 0.0
        if self.png is None:
            plt.ion()
            plt.show(block=False)

    def write_block(self, block: DecisionBlock) -> None:
        """Keep the block's last points (only those can still be on screen); redraw now and then."""
        self.buffer.extend(block.decisions(start=max(0, len(block) - self.buffer.maxlen)))
        if self.png is None and time.monotonic() - self._last_draw > REDRAW_S:
            self.draw()
            self.plt.pause(0.001)
            self._last_draw = time.monotonic()

    def draw(self) -> None:
        """Redraw the axes from the buffer."""
        ax = self.ax
        ax.clear()
        rows = list(self.buffer)
        if not rows:
            return
        times = [datetime.fromtimestamp(d.timestamp, tz=timezone.utc) for d in rows]
        ax.plot(times, [d.value for d in rows], color="tab:blue", lw=1, label="value")
        band = [(t, d.expected, d.spread) for t, d in zip(times, rows) if math.isfinite(d.expected)]
        if band:
            bt, center, spread = zip(*band)
            lo = [c - 3 * s for c, s in zip(center, spread)]
            hi = [c + 3 * s for c, s in zip(center, spread)]
            ax.fill_between(bt, lo, hi, color="tab:blue", alpha=0.15, lw=0, label="expected ±3 sd")
        flagged = [(t, d.value) for t, d in zip(times, rows) if d.is_anomaly]
        if flagged:
            ft, fv = zip(*flagged)
            ax.scatter(ft, fv, color="red", s=22, zorder=3, label="anomaly")
        truth = [(t, d.value) for t, d in zip(times, rows) if d.label]
        if truth:
            tt, tv = zip(*truth)
            ax.scatter(tt, tv, facecolors="none", edgecolors="black", s=50, lw=0.8, zorder=4,
                       label="injected (simulator truth)")
        ax.set_title(f"{self.title}: {len(flagged)} anomalies in the last {len(rows)} points")
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("value")
        ax.legend(loc="upper left", fontsize=8)
        self.fig.autofmt_xdate()
        self.fig.tight_layout()

    def close(self) -> None:
        """Write the PNG (when asked for one) and release the figure."""
        if self.png is not None:
            self.draw()
            self.fig.savefig(self.png, dpi=110)
        self.plt.close(self.fig)
