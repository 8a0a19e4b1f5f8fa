"""What a download reports while it runs: the events the desktop app and the command line show.

Events are sent from the thread that downloads; a GUI forwards them to its own thread
(e.g. with a queued Qt signal) before touching widgets.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable


class State(str, enum.Enum):
    CHECKING = "checking"          # hashing a file or .part already on disk
    DOWNLOADING = "downloading"
    PAUSED = "paused"              # no bytes are read; the .part is kept
    RETRYING = "retrying"          # waiting before trying the same mirror again (message says why)
    MIRROR_FAILED = "mirror_failed"  # this mirror is given up; the next one follows (message says why)
    RESTARTING = "restarting"      # the mirror cannot resume: the .part was discarded
    DONE = "done"                  # verified and in place (message says what was verified)
    FAILED = "failed"              # message says why and what to do
    CANCELLED = "cancelled"        # the .part is kept for the next run


@dataclass(frozen=True)
class ProgressEvent:
    file: str                  # file name, e.g. "llama2_7b.ckpt"
    done_bytes: int
    total_bytes: int | None    # None while the size is unknown
    speed_bps: float           # bytes per second over the last few seconds
    eta_s: float | None        # None when the size or the speed is unknown
    mirror_url: str | None     # the address being read
    state: State
    message: str | None = None  # one line for the user, at state changes


ProgressCallback = Callable[[ProgressEvent], None]


class SpeedMeter:
    """Speed over a sliding window, so that a pause or a stall shows at once."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self.samples.clear()

    def add(self, done: int) -> None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()

    def speed(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return max(d1 - d0, 0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, done: int, total: int | None) -> float | None:
        speed = self.speed()
        if total is None or speed <= 0:
            return None
        return max(total - done, 0) / speed


class Reporter:
    """Sends events for one file: state changes always, byte counts at most every ``interval_s``."""

    def __init__(self, name: str, callback: ProgressCallback | None, interval_s: float = 0.25):
        self.name, self.callback, self.interval_s = name, callback, interval_s
        self.meter = SpeedMeter()
        self.total: int | None = None
        self.mirror: str | None = None
        self.last_state: State | None = None
        self._last = 0.0

    def emit(self, state: State, done: int, message: str | None = None) -> None:
        self.last_state = state
        if self.callback is None:
            return
        self._last = time.monotonic()
        self.callback(ProgressEvent(file=self.name, done_bytes=done, total_bytes=self.total,
                                    speed_bps=self.meter.speed(), eta_s=self.meter.eta(done, self.total),
                                    mirror_url=self.mirror, state=state, message=message))

    def bytes(self, done: int, state: State = State.DOWNLOADING) -> None:
        self.meter.add(done)
        if time.monotonic() - self._last >= self.interval_s:
            self.emit(state, done)


class SlowWindow:
    """Bytes received over the last ``window_s``: a connection slower than ``min_bps`` there is worth dropping."""

    def __init__(self, min_bps: float, window_s: float):
        self.min_bps, self.window_s = min_bps, window_s
        self.start, self.received = time.monotonic(), 0

    def add(self, n: int) -> str | None:
        """Count ``n`` bytes; a few words when the window just ended below the minimum speed, else None."""
        self.received += n
        elapsed = time.monotonic() - self.start
        if elapsed < self.window_s:
            return None
        speed = self.received / elapsed
        self.start, self.received = time.monotonic(), 0
        return f"{speed:.0f} B/s over {elapsed:.0f} s" if speed < self.min_bps else None
