"""Saving conversation states without making anyone wait, and keeping a folder of them within a size.

After an answer the engine copies only the rows the state file does not have yet (a turn's worth,
a fraction of a second) and hands them to ``StateWriter``, whose one background thread writes
them (``prompt_cache``) while the model is already free for the next question. Writes to one file
happen in the order they were asked for; reading a file first waits for its pending writes.

A folder of states (the app's, one file per conversation and model: ``state_file_name``) is kept
under a size: after each write the least recently used files go first (a file is "used" when it
is written or read back).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.kept_files import evict_least_recent, kept_files, kept_size, remove_kept

from .kv_cache import shared_prefix
from .prompt_cache import PromptStateFile

log = logging.getLogger("engine.prompt_cache")
SUFFIX = ".kvstate"
_STALE_TMP_S = 600   # a temporary file this old belongs to a save that was killed


def state_file_name(key: str, identity: str) -> str:
    """The file of conversation ``key`` for the model ``identity``: switching models keeps both states."""
    safe = "".join(ch for ch in key if ch.isalnum() or ch in "-_")[:64] or "state"
    return f"{safe}-{identity[:16]}{SUFFIX}"


def states_size(folder: Path) -> int:
    """Bytes the saved states in ``folder`` take."""
    return kept_size(folder, SUFFIX)


def remove_states(folder: Path, key: str | None = None) -> int:
    """Delete the states of conversation ``key`` (every model's), or all of them; how many were deleted.
    One held open (Windows) stays, with a warning: it goes with the next eviction."""
    prefix = None if key is None else state_file_name(key, "")[:-len(SUFFIX)]
    return remove_kept(path for path, _, _ in kept_files(folder, SUFFIX)
                       if prefix is None or path.name.startswith(prefix))


def evict(folder: Path, budget: int, busy: set[Path] = frozenset()) -> None:
    """Delete the least recently used states until the folder's states fit in ``budget`` bytes."""
    for path, size in evict_least_recent(folder, SUFFIX, budget, keep=busy, stale_tmp_s=_STALE_TMP_S):
        log.info("evicted the saved state %s (%d MB) to keep the folder under %d MB", path.name, size >> 20,
                 budget >> 20)


@dataclass
class _Known:
    """What a state file holds (or will, once its pending writes are done)."""

    ids: list[int]
    boundaries: list[int]                        # positions where its segments end
    size: int | None                             # its expected size once written (None: unknown)


@dataclass
class _Job:
    state: PromptStateFile
    ids: list[int]
    keys: np.ndarray                             # rows from ``have_from`` on
    values: np.ndarray
    have_from: int
    budget: int | None


class StateWriter:
    """One background thread writing state files in order; the engine thread never waits on a disk."""

    def __init__(self):
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._cond = threading.Condition()
        self._pending: dict[Path, int] = {}
        self._known: dict[Path, _Known] = {}
        self._thread: threading.Thread | None = None
        self.failures = 0

    def rows_needed(self, state: PromptStateFile, ids: list[int]) -> int | None:
        """From which position the file needs new rows to hold ``ids`` (None: it holds them already)."""
        known = self._known_state(state)
        if known is None:
            return 0
        if known.ids == ids:
            return None
        shared = shared_prefix(known.ids, ids)
        return max((b for b in known.boundaries if b <= shared), default=0)

    def expected_ids(self, path: Path) -> list[int] | None:
        """The ids ``path`` holds once its pending saves are done, if this writer knows (None: read the file)."""
        with self._cond:
            known = self._known.get(path)
            return list(known.ids) if known is not None and (self._pending.get(path) or known.size is not None) \
                else None

    def _known_state(self, state: PromptStateFile) -> _Known | None:
        path = state.path
        with self._cond:
            known, pending = self._known.get(path), self._pending.get(path, 0)
        if pending:
            return known
        if known is not None and known.size is not None:
            try:
                if path.stat().st_size == known.size:
                    return known
            except OSError:
                pass
        index = state.scan()
        if index is None:
            return None
        ends = [s.first + s.count for s in index.segments]
        known = _Known(index.ids, ends, None)
        with self._cond:
            self._known[path] = known
        return known

    def submit(self, state: PromptStateFile, ids: list[int], keys: np.ndarray, values: np.ndarray,
               have_from: int, budget: int | None = None) -> None:
        """Queue a save of ``ids`` whose rows from ``have_from`` are ``keys``/``values`` (copies)."""
        known = self._known.get(state.path)
        kept = [b for b in (known.boundaries if known else []) if b <= have_from]
        with self._cond:
            self._known[state.path] = _Known(list(ids), kept + [len(ids)], None)
            self._pending[state.path] = self._pending.get(state.path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="prompt-state-writer", daemon=True)
                self._thread.start()
        self._queue.put(_Job(state, list(ids), keys, values, have_from, budget))

    def wait(self, path: Path | None = None, timeout: float | None = None) -> bool:
        """Until the pending writes (of ``path``, or all) are done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._pending.get(path, 0) if path is not None else any(self._pending.values())):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            path = job.state.path
            try:
                def rows(a, b, job=job):
                    return job.keys[:, :, a - job.have_from:b - job.have_from], \
                        job.values[:, :, a - job.have_from:b - job.have_from]
                job.state.save(job.ids, rows, job.have_from)
                size = path.stat().st_size
                with self._cond:
                    known = self._known.get(path)
                    if known is not None and known.ids == job.ids:
                        known.size = size
                if job.budget is not None:
                    with self._cond:
                        busy = {p for p, n in self._pending.items() if n > 1 or p == path}
                    evict(path.parent, job.budget, busy)
            except (OSError, ValueError) as exc:
                self.failures += 1
                log.warning("could not save the conversation state %s: %s", path, exc)
                with self._cond:
                    self._known.pop(path, None)
            finally:
                with self._cond:
                    self._pending[path] -= 1
                    if not self._pending[path]:
                        del self._pending[path]
                    self._cond.notify_all()


def save_cache(executor, ids: list[int], state: PromptStateFile, writer: StateWriter,
               budget: int | None = None) -> None:
    """Queue a save of the executor's rows for ``ids`` (its cache's valid prefix) into ``state``.

    Copies only the rows the file does not hold yet; the writing happens on the writer's thread.
    A state that alone would not fit ``budget`` is not kept at all.
    """
    if not ids:
        return
    if budget is not None and state.layout.payload_bytes(len(ids)) > budget:
        state.remove()
        log.info("not saving the conversation state %s: %d tokens exceed the folder's limit", state.path.name,
                 len(ids))
        return
    have_from = writer.rows_needed(state, ids)
    if have_from is None:
        state.touch()
        return
    keys, values = executor.export_kv(have_from, len(ids))
    writer.submit(state, ids, keys, values, have_from, budget)
