"""Decode's thread count, chosen by timing the steps while the user's other programs come and go.

A decode step is ~100 parallel regions, each ending when its slowest thread does.
When another program keeps a core busy (a browser playing video, a virus scan, a
build), one of our threads keeps losing its core for a whole time slice and the
other waits for it at every region: on this 2-core VM with one busy core, decode
fell from 15.8 to 5.8 tokens/s on 2 threads, while 1 thread made 12.3 (llama.cpp
alike: 6.1 on 2 threads, 14.0 on 1). On a quiet machine 2 threads are 1.22x 1.

So, unless the user fixed the count, the steps are timed and now and then a few
run at one thread fewer (or, after a reduction, one more); the faster count
stays. A probe comes sooner when the steps suddenly slow down (something else
started), and less often while probes keep losing (a quiet machine pays ~0.5%).
Which thread computes an output never changes how it is computed, so the answer
is bit-identical whatever count a step ran with.
"""

from __future__ import annotations

import statistics
from collections import deque

PROBE_STEPS = 3        # steps at the other count per probe
FIRST_PERIOD = 16      # steps at the chosen count before the first probe; doubled after each losing probe
LONGEST_PERIOD = 512
KEEP = 8               # latest steps per width remembered at the chosen count
SLOWER = 1.3           # the latest steps this much slower than the best seen: probe now
BETTER = 0.95          # a probe's median step at most this fraction of the chosen count's: switch


class ThreadTuner:
    """``threads()`` before a step, ``record(width, seconds)`` after it (width: tokens in the step)."""

    def __init__(self, most: int, fixed: bool):
        self.most = max(1, most)
        self.fixed = fixed or self.most == 1
        self.chosen = self.most
        self.period = FIRST_PERIOD
        self._since_probe = 0
        self._probe: int | None = None       # the count being tried, while a probe runs
        self._probe_times: dict[int, list[float]] = {}
        self._times: dict[int, deque] = {}   # width -> latest step seconds at the chosen count
        self._best: dict[int, float] = {}    # width -> best median of KEEP steps seen at the chosen count
        self._last_try_down = False
        self.switches = 0

    def threads(self) -> int:
        """The count for the next decode step (a probe's while one runs)."""
        if self.fixed:
            return self.most
        return self._probe if self._probe is not None else self.chosen

    def steady(self) -> int:
        """The chosen count, for work that is not timed here (prompts)."""
        return self.most if self.fixed else self.chosen

    def record(self, width: int, seconds: float) -> None:
        if self.fixed:
            return
        if self._probe is not None:
            self._probe_times.setdefault(width, []).append(seconds)
            if sum(len(v) for v in self._probe_times.values()) >= PROBE_STEPS:
                self._decide()
            return
        times = self._times.setdefault(width, deque(maxlen=KEEP))
        times.append(seconds)
        self._since_probe += 1
        slowed = False
        if len(times) == KEEP:
            now = statistics.median(times)
            best = self._best.get(width, now)
            self._best[width] = min(best, now)
            slowed = statistics.median(list(times)[-4:]) > SLOWER * best
        if self._since_probe >= self.period or (slowed and self._since_probe >= KEEP):
            self._start_probe()

    def _start_probe(self) -> None:
        down, up = self.chosen - 1, self.chosen + 1
        if down >= 1 and (up > self.most or not self._last_try_down):
            self._probe, self._last_try_down = down, True
        elif up <= self.most:
            self._probe, self._last_try_down = up, False
        self._probe_times = {}
        self._since_probe = 0

    def _decide(self) -> None:
        probe, self._probe = self._probe, None
        wins = [statistics.median(v) < BETTER * statistics.median(self._times[w])
                for w, v in self._probe_times.items() if len(self._times.get(w, ())) >= 3]
        if wins and all(wins):
            self.chosen = probe
            self.switches += 1
            self._times.clear()
            self._best.clear()
        else:   # below the full count, keep asking for it back (the other program may have finished)
            self.period = min(LONGEST_PERIOD if self.chosen == self.most else LONGEST_PERIOD // 4, self.period * 2)
            self._best.clear()   # the steps' time now (a longer context is slower too) is the new normal
