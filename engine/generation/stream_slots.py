"""The cache slots of a model serving several answers at once, and which answer has which.

A request takes a free slot for the length of its answer; with the slot comes
what that slot's cache holds (``KVCacheState``), so a client coming back with
its conversation finds it where it left it: the free slot whose cache shares
the longest start with the prompt is chosen (llama-server's slot similarity),
else the one unused longest. When every slot is taken, a request waits (and can
still be cancelled), or with ``wait=False`` is refused at once.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from engine.backends.step_scheduler import SlotExecutor, StepScheduler
from engine.errors import Cancelled, EngineBusy

from .kv_cache import KVCacheState, shared_prefix


class StreamSlots:
    def __init__(self, executor):
        self.scheduler = StepScheduler(executor)
        self.count = executor.slots
        self.executors = [self.scheduler.slot_executor(s) for s in range(self.count)]
        self.caches = [KVCacheState() for _ in range(self.count)]
        self._used = [0.0] * self.count
        self._free = set(range(self.count))
        self._cond = threading.Condition()

    @property
    def full(self) -> bool:
        return not self._free

    @property
    def in_use(self) -> int:
        return self.count - len(self._free)

    def _pick(self, prompt: Sequence[int]) -> int:
        return max(self._free, key=lambda s: (shared_prefix(self.caches[s].ids, prompt), -self._used[s]))

    @contextmanager
    def stream(self, prompt: Sequence[int], wait: bool = True,
               cancel: threading.Event | None = None) -> Iterator[tuple[SlotExecutor, KVCacheState]]:
        """A free slot's executor and cache state for one answer."""
        with self._cond:
            while not self._free:
                if not wait:
                    raise EngineBusy("The model is busy with other answers; try again when one has finished.",
                                     code="engine_busy")
                if cancel is not None and cancel.is_set():
                    raise Cancelled("The request was cancelled while waiting for the model.",
                                    code="request_cancelled")
                self._cond.wait(0.05)
            slot = self._pick(prompt)
            self._free.discard(slot)
        self.scheduler.join(slot)
        try:
            yield self.executors[slot], self.caches[slot]
        finally:
            self.scheduler.leave(slot)
            with self._cond:
                self._used[slot] = time.monotonic()
                self._free.add(slot)
                self._cond.notify_all()

    @contextmanager
    def all_slots(self):
        """Every slot, once the answers running have finished (resetting, closing)."""
        with self._cond:
            while len(self._free) < self.count:
                self._cond.wait(0.05)
            taken, self._free = self._free, set()
        try:
            yield
        finally:
            with self._cond:
                self._free = taken
                self._cond.notify_all()

    def reset(self) -> None:
        with self.all_slots():
            self.caches = [KVCacheState() for _ in range(self.count)]

    def close(self) -> None:
        with self.all_slots():
            self.scheduler.close()
