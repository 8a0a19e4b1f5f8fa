"""Several streams on one model: their next tokens computed together, one pass over the weights per step.

Decode on a CPU is bound by reading the weights, and one pass can carry up to
``MAX_TOKENS`` tokens for about the cost of one; so N answers decoded together
cost little more than one (llama-server's parallel slots, continuous batching).
Each stream owns a slot of the executor's cache and runs the ordinary
``generate`` loop in its own thread through a ``SlotExecutor``; the scheduler's
one thread gathers the rows the streams hand it into one ``decode_rows`` call
and hands each stream its logits. Streams join and leave between steps; a
joining stream's prompt is computed in blocks between steps. While other streams
decode, those blocks are small (``JOIN_PIECE`` tokens, llama-server's and vLLM's
chunked prefill), so a long prompt holds the others up for a few steps' time per
token they make, not a whole 512-token block. Blocks of streams that join together
(or while a pass runs) are computed in one pass, as one block of their rows: a
short prompt's block is compute-bound, and four of them in separate passes cost
the clients asking at once about twice the time of one pass of all their rows
(``prefill_pieces``). A token's logits do not depend on
what shares its step, nor a prompt's on the blocks it is cut into (the kernels
are batch-invariant), so each answer is the one it gets alone.

A stream alone computes its tokens in its own thread (no hand-over to the
scheduler's thread and back, which costs a small model a fifth of its rate).

Nothing here waits on a client: the streams' threads sample, and push text to
whoever listens without blocking; a stream that does not come back in time for
a step simply joins the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Sequence

import numpy as np

from engine.backends.executor import Executor, PrefillCancelled
from engine.errors import EngineError

log = logging.getLogger(__name__)
# How long a step waits for streams that decoded in the last one to send their next rows (they are sampling).
GATHER_S = 0.01
# Prompt tokens per block while other streams decode. On the built-in model a 64-token block cost about 5 decode
# steps (48: 4, 128: 8, 512: 31) at 1.3x the per-token cost of 512-token blocks; a lone prompt keeps the big blocks.
JOIN_PIECE = 64


class _Work:
    """One request to the scheduler's thread, answered through ``done``."""

    __slots__ = ("slot", "tokens", "pos", "piece", "cancel", "done", "result", "error")

    def __init__(self, slot: int, tokens=(), pos: int = 0, piece=None, cancel: threading.Event | None = None):
        self.slot, self.tokens, self.pos, self.piece, self.cancel = slot, list(tokens), pos, piece, cancel
        self.done = threading.Event()
        self.result = self.error = None

    def answer(self, result=None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def wait(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class StepScheduler:
    """Owns the model's compute: decode rows of every slot in one step, prompt blocks between steps."""

    def __init__(self, executor: Executor, gather_s: float = GATHER_S):
        from engine.backends.cpu.cpu_executor import PREFILL_BLOCK
        from engine.backends.cpu.model_step import MAX_TOKENS

        self.executor = executor
        self.slots = executor.slots
        self.max_rows = MAX_TOKENS
        self.max_block_rows = PREFILL_BLOCK   # prompt rows in one pass: the scratch memory counted is for one block
        self.gather_s = gather_s
        self.steps = 0                   # decode steps run, and the rows they carried (bench, tests)
        self.rows = 0
        self.blocks = 0                  # prompt blocks run, and how many of them were cut to JOIN_PIECE
        self.pieces = 0
        self.joined_blocks = 0           # prompt blocks computed in the pass of another stream's block
        # where the scheduler's time went (bench): steps' passes, prompt passes, waiting for streams' rows
        self.seconds = {"steps": 0.0, "prompts": 0.0, "gather": 0.0}
        self._cond = threading.Condition()
        self._decodes: list[_Work] = []
        self._blocks: deque[_Work] = deque()
        self._expected: set[int] = set()  # slots that decoded in the last step: their next rows come soon
        self._streams: set[int] = set()   # slots with a stream running
        self._decoding: set[int] = set()  # slots whose stream is decoding (sent rows since its last prompt block)
        self._compute = threading.Lock()  # one computation at a time: the scheduler's, or a lone stream's
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="step-scheduler", daemon=True)
        self._thread.start()

    def slot_executor(self, slot: int) -> "SlotExecutor":
        return SlotExecutor(self, slot)

    # -- streams' threads ------------------------------------------------------

    def decode(self, slot: int, tokens: Sequence[int], pos: int) -> np.ndarray:
        with self._cond:
            self._decoding.add(slot)
            alone = self._streams <= {slot} and not self._decodes and not self._blocks
        if alone and self._compute.acquire(blocking=False):
            try:
                logits = self.executor.decode_rows(tokens, range(pos, pos + len(tokens)), [slot] * len(tokens))
                self.steps += 1
                self.rows += len(tokens)
                return logits
            finally:
                self._compute.release()
        return self._submit(_Work(slot, tokens, pos), self._decodes)

    def block_size(self, slot: int, largest: int) -> int:
        """How many prompt tokens the slot's next block may hold: ``JOIN_PIECE`` while another stream decodes
        (it waits for each block), else ``largest`` (the fewer the blocks, the fewer passes over the weights)."""
        with self._cond:
            others = bool(self._decoding - {slot})
            if others and largest > JOIN_PIECE:
                self.pieces += 1
                return JOIN_PIECE
            return largest

    def block(self, piece, cancel: threading.Event | None = None) -> np.ndarray:
        """A block of a prompt (``PromptPiece``) computed on the scheduler's thread between two steps, in one pass
        with the blocks other streams sent meanwhile: its last token's logits."""
        with self._cond:
            self._expected.discard(piece.slot)
            self._decoding.discard(piece.slot)
        return self._submit(_Work(piece.slot, piece=piece, cancel=cancel), self._blocks)

    def join(self, slot: int) -> None:
        """A stream starts on the slot."""
        with self._cond:
            self._streams.add(slot)

    def leave(self, slot: int) -> None:
        """The slot's stream has ended: steps no longer wait for it."""
        with self._cond:
            self._expected.discard(slot)
            self._streams.discard(slot)
            self._decoding.discard(slot)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)

    def _submit(self, work: _Work, queue) -> object:
        with self._cond:
            if self._closed:
                raise EngineError("The model is closing.", code="engine_closing")
            queue.append(work)
            self._cond.notify_all()
        return work.wait()

    # -- the scheduler's thread ------------------------------------------------

    def _ready(self, first_at: float | None) -> bool:
        """Run the step now: every stream expected has sent its rows, a block waits, or the wait is over."""
        if not self._decodes:
            return False
        sent = {w.slot for w in self._decodes}
        return (self._expected <= sent or bool(self._blocks) or first_at is None
                or time.monotonic() >= first_at + self.gather_s)

    def _blocks_ready(self, blocks_at: float) -> bool:
        """Run the prompt blocks now (no step waits): unless a stream that joined has sent nothing yet (streams
        that arrive together: their prompts go in one pass), for at most ``gather_s``."""
        coming = self._streams - self._decoding - {w.slot for w in self._blocks}
        return not coming or time.monotonic() >= blocks_at + self.gather_s

    def _run(self) -> None:
        first_at = blocks_at = gather_from = None
        while True:
            with self._cond:
                while not self._closed:
                    if self._decodes and first_at is None:
                        first_at = time.monotonic()
                    if self._decodes and gather_from is None:
                        gather_from = time.perf_counter()
                    if self._blocks and blocks_at is None:
                        blocks_at = time.monotonic()
                    if self._ready(first_at) or (self._blocks and not self._decodes and self._blocks_ready(blocks_at)):
                        break
                    waits = ([first_at] if self._decodes else []) + ([blocks_at] if self._blocks else [])
                    timeout = max(min(waits) + self.gather_s - time.monotonic(), 0) if waits else None
                    self._cond.wait(timeout)
                if self._closed:
                    for work in list(self._decodes) + list(self._blocks):
                        work.answer(error=EngineError("The model is closing.", code="engine_closing"))
                    return
                step, rows = [], 0
                for work in list(self._decodes):     # in arrival order, as many as fit the step
                    if rows + len(work.tokens) > self.max_rows:
                        break
                    step.append(work)
                    rows += len(work.tokens)
                for work in step:
                    self._decodes.remove(work)
                first_at = time.monotonic() if self._decodes else None
                if gather_from is not None and step:
                    self.seconds["gather"] += time.perf_counter() - gather_from
                gather_from = time.perf_counter() if self._decodes else None
                blocks = self._take_blocks()
                blocks_at = time.monotonic() if self._blocks else None
            with self._compute:
                if step:
                    self._step(step)
                if blocks:
                    t0 = time.perf_counter()
                    self._prefill(blocks)
                    self.seconds["prompts"] += time.perf_counter() - t0

    def _take_blocks(self) -> list[_Work]:
        """The first prompt block waiting, and those of other streams after it that fit one pass with it."""
        taken, rows = [], 0
        for work in list(self._blocks):
            if taken and (rows + len(work.piece.ids) > self.max_block_rows
                          or work.slot in {w.slot for w in taken}):
                break
            taken.append(work)
            rows += len(work.piece.ids)
        for work in taken:
            self._blocks.remove(work)
        return taken

    def _prefill(self, works: list[_Work]) -> None:
        """Prompt blocks of several streams in one pass (``prefill_pieces``); a block alone may stop part-way when
        its stream is cancelled, blocks together are cancelled before the pass (the stream stops after it)."""
        if len(works) > 1:
            for w in [w for w in works if w.cancel is not None and w.cancel.is_set()]:
                w.answer(error=PrefillCancelled(w.piece.done))
                works.remove(w)
        if not works:
            return
        try:
            results = self.executor.prefill_pieces([w.piece for w in works], works[0].cancel if len(works) == 1
                                                   else None)
        except BaseException as exc:  # noqa: BLE001 - handed to the stream that asked
            if len(works) == 1:
                works[0].answer(error=exc)
            else:
                for w in works:   # find the one at fault: each alone
                    self._prefill([w])
            return
        self.blocks += 1
        self.joined_blocks += len(works) - 1
        for w, logits in zip(works, results):
            w.answer(logits)

    def _step(self, works: list[_Work]) -> None:
        tokens = [t for w in works for t in w.tokens]
        positions = [w.pos + i for w in works for i in range(len(w.tokens))]
        slots = [w.slot for w in works for _ in w.tokens]
        try:
            t0 = time.perf_counter()
            logits = self.executor.decode_rows(tokens, positions, slots)
            self.seconds["steps"] += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - a bad row must fail its stream, not the others
            if len(works) == 1:
                works[0].answer(error=exc)
            else:
                for w in works:   # find the one at fault: each alone
                    self._step([w])
            return
        self.steps += 1
        self.rows += len(tokens)
        with self._cond:
            self._expected |= {w.slot for w in works}
        first = 0
        for w in works:
            w.answer(logits[first:first + len(w.tokens)])
            first += len(w.tokens)


class SlotExecutor(Executor):
    """One stream's view of the shared executor: its own cache slot, its compute through the scheduler.

    ``generate``, prompt reuse, lookup, saving states run on it unchanged.
    """

    def __init__(self, scheduler: StepScheduler, slot: int):
        shared = scheduler.executor
        self.scheduler, self.slot, self.shared = scheduler, slot, shared
        self.name, self.device, self.weight_format = shared.name, shared.device, shared.weight_format
        self.config, self.max_seq_len = shared.config, shared.max_seq_len
        self.supports_kv_rows = shared.supports_kv_rows
        self.kv_element_type = shared.kv_element_type

    @classmethod
    def estimate_memory(cls, cfg, source, options):
        raise NotImplementedError("a slot holds no memory of its own")

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.scheduler.decode(self.slot, [token], pos)[0]

    def decode_batch(self, tokens: Sequence[int], pos: int) -> np.ndarray:
        return self.scheduler.decode(self.slot, tokens, pos)

    def prefill(self, ids: Sequence[int], start_pos: int, cancel: threading.Event | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The prompt in blocks, each a turn of the scheduler: the shared executor's own 512-token blocks when
        no other stream decodes, ``JOIN_PIECE`` tokens while one does (the logits and cache rows are the same
        whatever the cut, so the answer is the one a single stream gets). Short prompts go through the decode
        steps, with the others."""
        from engine.backends.cpu.cpu_executor import DECODE_PATH_MAX, PREFILL_BLOCK, PromptPiece

        ids = np.asarray(ids, dtype=np.int64)
        if start_pos + len(ids) > self.max_seq_len:
            return self.shared.prefill(ids, start_pos, slot=self.slot)   # its own clear refusal
        logits = None
        if len(ids) <= DECODE_PATH_MAX:
            for n, token in enumerate(ids):
                if cancel is not None and cancel.is_set():
                    raise PrefillCancelled(n)
                logits = self.decode(int(token), start_pos + n)
            return logits
        begin = 0
        while begin < len(ids):
            if cancel is not None and cancel.is_set():
                raise PrefillCancelled(begin)
            part = ids[begin:begin + self.scheduler.block_size(self.slot, min(PREFILL_BLOCK, len(ids) - begin))]
            logits = self.scheduler.block(PromptPiece(part, start_pos + begin, self.slot, begin, progress), cancel)
            begin += len(part)
        return logits

    def export_kv(self, start: int, stop: int):
        return self.shared.export_kv(start, stop, slot=self.slot)

    def import_kv(self, start: int, keys: np.ndarray, values: np.ndarray) -> None:
        self.shared.import_kv(start, keys, values, slot=self.slot)

    def shift_kv(self, src: int, dst: int, count: int) -> None:
        self.shared.shift_kv(src, dst, count, slot=self.slot)

    def close(self) -> None:
        """The shared executor is closed by its owner."""
