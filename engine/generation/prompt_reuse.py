"""Before a prefill, fill the KV cache with what is known already instead of computing it.

In order of preference: the rows the cache holds for the prompt's prefix (free), rows another
source holds for a longer prefix (a conversation's state file; a memory slot of an earlier
request, as llama-server's ``cache_prompt``), then a stretch of the cache moved to its new place
when the conversation's oldest turns were dropped (``kv_cache.plan_reuse``). Only what none of
them has is computed. Sources are read only through executors that can take rows
(``Executor.supports_kv_rows``); the others recompute, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .kv_cache import KVCacheState, ReusePlan, shared_prefix
from .prompt_cache import PromptStateFile, StateIndex
from .prompt_states import StateWriter

log = logging.getLogger("engine.prompt_cache")
MIN_SLOT_TOKENS = 64   # a shorter prompt is cheap to compute again: not worth a slot


class StateOnDisk:
    """A conversation's state file as a source of rows."""

    name = "disk"

    def __init__(self, state: PromptStateFile, writer: StateWriter):
        self.state, self.writer = state, writer
        self.index: StateIndex | None = None

    def shared(self, prompt: Sequence[int], beyond: int = 0) -> int:
        """How much of ``prompt`` the file holds; 0 at once when it cannot hold more than ``beyond`` tokens (the
        cache already has them): then the next question never waits for the last answer's save."""
        expected = self.writer.expected_ids(self.state.path)
        if expected is not None and shared_prefix(expected, prompt) <= beyond:
            return 0
        self.writer.wait(self.state.path)          # a save of this file may still be under way
        self.index = self.state.scan()
        return shared_prefix(self.index.ids, prompt) if self.index else 0

    def restore(self, executor, start: int, stop: int) -> int:
        got = start
        for first, keys, values in self.state.read_rows(self.index, start, stop):
            executor.import_kv(first, keys, values)
            got = first + keys.shape[2]
        self.state.touch()
        return got


@dataclass
class _Slot:
    ids: list[int]
    keys: np.ndarray
    values: np.ndarray
    used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


class MemorySlots:
    """Rows of earlier prompts kept in RAM, least recently used dropped first (the API server's)."""

    name = "memory"

    def __init__(self, slots: int = 0, budget_bytes: int = 0):
        self.slots, self.budget = slots, budget_bytes
        self._kept: list[_Slot] = []
        # answers in parallel (``stream_slots``) ask from several threads: each its own best match
        self._found = threading.local()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.slots > 0 and self.budget > 0

    def shared(self, prompt: Sequence[int], beyond: int = 0) -> int:
        self._found.best, best = None, 0
        with self._lock:
            kept = list(self._kept)
        for slot in kept:
            n = shared_prefix(slot.ids, prompt)
            if n > best:
                self._found.best, best = slot, n
        return best

    def restore(self, executor, start: int, stop: int) -> int:
        slot = self._found.best
        executor.import_kv(start, slot.keys[:, :, start:stop], slot.values[:, :, start:stop])
        slot.used = time.monotonic()
        return stop

    def keep(self, executor, ids: list[int]) -> None:
        """Copy the cache's rows for ``ids`` (its valid prefix) into a slot, before a prompt overwrites them."""
        if not self.enabled or len(ids) < MIN_SLOT_TOKENS:
            return
        with self._lock:
            if any(shared_prefix(slot.ids, ids) == len(ids) for slot in self._kept):
                return                             # a slot has them already
        keys, values = executor.export_kv(0, len(ids))
        if keys.nbytes + values.nbytes > self.budget:
            return
        with self._lock:
            self._keep(ids, keys, values)

    def _keep(self, ids: list[int], keys: np.ndarray, values: np.ndarray) -> None:
        self._kept = [s for s in self._kept if shared_prefix(s.ids, ids) < len(s.ids)]  # superseded
        self._kept.append(_Slot(list(ids), keys, values))
        self._kept.sort(key=lambda s: s.used)
        while len(self._kept) > self.slots or sum(s.nbytes for s in self._kept) > self.budget:
            self._kept.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._kept = []


@dataclass
class Reuse:
    """What the cache supplied for one prompt."""

    plan: ReusePlan
    restored: int = 0            # tokens read from a source (disk or a memory slot)
    source: str = ""             # "disk", "memory", or "" (the live cache, or nothing)


def fill_cache(executor, cache: KVCacheState, prompt: Sequence[int], sources: Sequence,
               can_shift: bool) -> Reuse:
    """Put the most of ``prompt`` into the executor's cache without computing it; what remains is in the plan."""
    plan = cache.plan(prompt, can_shift)
    last = len(prompt) - 1
    best, best_n = None, plan.keep
    for source in sources:
        n = min(source.shared(prompt, best_n), last)
        if n > best_n and n >= plan.cached:        # exact rows over moved ones, when they reach as far
            best, best_n = source, n
    live = cache.valid_prefix()
    for source in sources:
        # this prompt overwrites them (another conversation): a later request may want them back
        if isinstance(source, MemorySlots) and not plan.moved and len(live) - best_n >= MIN_SLOT_TOKENS:
            source.keep(executor, live)
    if best is not None:
        started = time.perf_counter()
        got = best.restore(executor, plan.keep, best_n)
        cache.written(plan.keep, prompt[plan.keep:got])
        log.info("restored %d tokens of the prompt from %s in %.2f s", got - plan.keep, best.name,
                 time.perf_counter() - started)
        return Reuse(ReusePlan(got), got - plan.keep, best.name)
    for src, dst, count in plan.moves:            # in order: each lands below every later one's source
        executor.shift_kv(src, dst, count)
    if plan.moves:
        cache.after_moves(prompt, plan)
    return Reuse(plan)
