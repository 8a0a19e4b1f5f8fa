"""The streaming, cancellable generation loop, independent of any backend.

``generate`` prefills the prompt (reusing whatever prefix the executor's cache
already holds, when the executor supports that), then decodes one token at a
time (or, with ``lookup``, the chosen token plus guesses checked in the same step),
calling ``on_token`` with the id and the text it adds. It stops on a stop
id (eos/eot), a stop string, ``max_new_tokens``, the end of the context, or
when ``cancel`` is set from another thread (also during a long prefill); the
stats say which and how fast. Logits that are not finite stop it with a
message that the weights are likely damaged, instead of printing garbage.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engine.backends.executor import Executor, PrefillCancelled
from engine.errors import CheckpointError, ContextOverflow, GenerationError
from engine.memory import peak_rss_bytes
from engine.text.detokenizer import IncrementalDecoder, StopStringFilter

from .kv_cache import KVCacheState
from .lookup import LookupDrafter
from .prompt_reuse import fill_cache
from .sampling import Sampler, SamplingSettings

TokenCallback = Callable[[int, str], None]  # (token id, text it adds); id -1 carries text flushed at the end
# (prompt tokens computed so far, how many must be, how many were read back from a saved state or memory slot)
PrefillCallback = Callable[[int, int, int], None]


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prefilled_tokens: int = 0   # prompt tokens actually computed (the rest came from the cache)
    cached_tokens: int = 0      # prompt tokens taken from a cache: in place, restored or shifted
    restored_tokens: int = 0    # of those, read back from a saved state (disk) or a memory slot
    shifted_tokens: int = 0     # of those, moved to new positions after older turns were dropped
    generated_tokens: int = 0
    ttft_s: float = 0.0
    prefill_s: float = 0.0      # computing the prompt
    reuse_s: float = 0.0        # reading back a saved state, or moving cached rows, before that
    decode_calls: int = 0       # forward passes after the prefill (one token, or one with lookup's guesses)
    decode_s: float = 0.0       # time spent in exactly those calls
    decode_tokens: int = 0      # tokens those passes computed that the answer kept (guesses not chosen do not count)
    drafted_tokens: int = 0     # lookup: guesses sent along with a chosen token
    accepted_tokens: int = 0    # of those, the ones the sampler chose
    finish_reason: str = ""     # "stop", "stop_string", "length", "context", "cancelled"
    peak_rss_bytes: int = 0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefilled_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_tokens and self.decode_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "prefilled_tokens": self.prefilled_tokens,
                "cached_tokens": self.cached_tokens, "restored_tokens": self.restored_tokens,
                "shifted_tokens": self.shifted_tokens, "reuse_s": round(self.reuse_s, 4),
                "generated_tokens": self.generated_tokens, "ttft_s": round(self.ttft_s, 4),
                "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 2),
                "decode_tokens_per_s": round(self.decode_tokens_per_s, 2), "decode_calls": self.decode_calls,
                "drafted_tokens": self.drafted_tokens, "accepted_tokens": self.accepted_tokens,
                "finish_reason": self.finish_reason, "peak_rss_bytes": self.peak_rss_bytes}


@dataclass
class Completion:
    prompt_ids: list[int]
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    stats: GenerationStats = field(default_factory=GenerationStats)
    dropped_messages: int = 0   # chat only: oldest messages left out so the prompt fits the context


def _check_prompt(prompt: list[int], executor: Executor) -> None:
    if not prompt:
        raise GenerationError("The prompt is empty: give at least one token or some text.",
                              code="prompt_empty_ids")
    vocab = executor.config.vocab_size
    if any(i < 0 or i >= vocab for i in prompt):
        raise GenerationError(f"Prompt ids must be between 0 and {vocab - 1} (the model's vocabulary).",
                              code="prompt_ids_out_of_range", params={"largest": vocab - 1})
    if len(prompt) >= executor.max_seq_len:
        raise ContextOverflow(f"The prompt has {len(prompt)} tokens but the context holds {executor.max_seq_len}: "
                              "shorten it, or allow a longer context if memory allows.",
                              tokens=len(prompt), limit=executor.max_seq_len,
                              code="prompt_too_long", params={"tokens": len(prompt), "context": executor.max_seq_len})


def _check_finite(logits: np.ndarray, step: int) -> None:
    if not np.isfinite(logits).all():
        raise CheckpointError(
            f"The model computed invalid numbers (NaN or Inf) at output token {step + 1}: its weights are most "
            "likely damaged. Verify the checkpoint for bad tensors, or download it again.", subject="weights",
            code="weights_invalid_numbers", params={"token": step + 1})


def _prefill(executor, prompt, cache, cancel, stats, sources=(), on_prefill=None, shift=True) -> np.ndarray | None:
    """Logits of the prompt's last token, or None when cancelled (the cache then says what is valid)."""
    if not executor.supports_prefix_reuse:
        cache.ids = []
        executor.reset()
    rows, start = executor.supports_kv_rows, time.perf_counter()
    reuse = fill_cache(executor, cache, prompt, sources if rows else (), can_shift=rows and shift)
    plan = reuse.plan
    stats.reuse_s = time.perf_counter() - start
    start = time.perf_counter()
    stats.cached_tokens, stats.restored_tokens, stats.shifted_tokens = plan.cached, reuse.restored, plan.moved
    ranges = plan.fresh(len(prompt))
    total, done, logits = sum(b - a for a, b in ranges), 0, None
    if on_prefill:
        on_prefill(0, total, reuse.restored)
    for a, b in ranges:
        report = (lambda n, done=done: on_prefill(done + n, total, reuse.restored)) if on_prefill else None
        try:
            logits = executor.prefill(prompt[a:b], a, cancel=cancel, progress=report)
        except PrefillCancelled as stop:
            cache.written(a, prompt[a:a + stop.computed], keep_after=b < len(prompt))
            logits, done = None, done + stop.computed
            break
        cache.written(a, prompt[a:b], keep_after=b < len(prompt))
        done += b - a
    else:
        if on_prefill:
            on_prefill(total, total, reuse.restored)
    stats.prefilled_tokens = done
    stats.prefill_s = time.perf_counter() - start
    return logits


def generate(executor: Executor, prompt_ids: Sequence[int], *, max_new_tokens: int = 256,
             sampling: SamplingSettings = SamplingSettings(), stop_ids: Sequence[int] = (),
             stop_strings: Sequence[str] = (), tokenizer=None, on_token: TokenCallback | None = None,
             cancel: threading.Event | None = None, cache: KVCacheState | None = None, sources: Sequence = (),
             on_prefill: PrefillCallback | None = None, context_shift: bool = True,
             lookup: LookupDrafter | None = None) -> Completion:
    """Answer ``prompt_ids``; ``sources`` may supply cached rows (``prompt_reuse``), ``on_prefill(done, total,
    restored)`` hears how far the prompt's computation is (and how much a saved state spared), ``context_shift``
    allows moving cached rows (``kv_cache``), ``lookup`` sends guesses from the conversation along with each
    token (``lookup``)."""
    prompt = [int(i) for i in prompt_ids]
    _check_prompt(prompt, executor)
    cache = cache or KVCacheState()
    result = Completion(prompt_ids=prompt)
    stats = result.stats
    stats.prompt_tokens = len(prompt)
    if max_new_tokens == 0:
        stats.finish_reason = "length"
        return result
    # A checkpoint's vocabulary may be padded past the tokenizer's: never pick an id it cannot decode.
    limit = tokenizer.vocab_size_with_added if tokenizer is not None else executor.config.vocab_size
    sampler = Sampler(sampling, getattr(tokenizer, "control_ids", frozenset()), limit)
    sampler.remember(prompt)
    stops = set(stop_ids)
    # Its left context too: a raw prompt may hold ids past the tokenizer, which it cannot decode.
    decoder = IncrementalDecoder(tokenizer, [i for i in prompt if i < limit]) if tokenizer is not None else None
    stop_filter = StopStringFilter(stop_strings if tokenizer is not None else ())
    pieces: list[str] = []

    start = time.perf_counter()
    logits = _prefill(executor, prompt, cache, cancel, stats, sources, on_prefill, context_shift)
    drafter = lookup if lookup is not None and lookup.mode != "off" else None
    if drafter is not None:
        drafter.begin(prompt)
    # One step feeds ``fed`` (the last token chosen, then any guesses) at ``pos`` and gives a row of logits per
    # fed token; a guess's row counts only if the sampler chose that guess from the row before it.
    rows, fed, guesses, guess, pos = [logits] if logits is not None else [], [], [], [], len(prompt)
    while len(rows):
        chosen: list[int] = []
        for row in rows:
            confirmed = len(chosen) + 1   # fed tokens whose rows hold: the first, and each guess chosen so far
            if cancel is not None and cancel.is_set():
                break
            row = row[:limit]
            _check_finite(row, stats.generated_tokens)
            token = sampler(row)
            if stats.generated_tokens == 0:
                stats.ttft_s = time.perf_counter() - start
            chosen.append(token)
            if token in stops:
                stats.finish_reason = "stop"
                break
            result.output_ids.append(token)
            sampler.remember([token])
            stats.generated_tokens += 1
            text = stop_filter.push(decoder.push(token)) if decoder else ""
            pieces.append(text)
            if on_token:
                on_token(token, text)
            if stop_filter.stopped:
                stats.finish_reason = "stop_string"
                break
            if stats.generated_tokens >= max_new_tokens:
                stats.finish_reason = "length"
                break
            if len(chosen) > len(guesses) or guesses[len(chosen) - 1] != token:
                break                     # the rows after a guess not chosen depend on it: never used
        if fed:
            cache.written(pos, fed[:confirmed])   # rows of guesses not chosen are never trusted
            stats.decode_tokens += confirmed
            pos += confirmed
        if drafter is not None:
            drafter.check(guess, len(guesses), chosen)
        if stats.finish_reason or (cancel is not None and cancel.is_set()):
            break
        if pos >= executor.max_seq_len:
            stats.finish_reason = "context"
            break
        token, guesses, guess = chosen[-1], [], []
        if drafter is not None:
            for t in chosen:
                drafter.seen(t)
            # a guess needs room in the context, and is worth nothing past the answer's length
            room = min(executor.max_seq_len - pos - 1, max_new_tokens - stats.generated_tokens - 1)
            guesses, guess = drafter.draft(room)
        fed = [token] + guesses
        step = time.perf_counter()
        rows = executor.decode_batch(fed, pos) if guesses else [executor.decode(token, pos)]
        seconds = time.perf_counter() - step
        stats.decode_s += seconds
        stats.decode_calls += 1
        if drafter is not None:
            drafter.cost.record(len(fed), seconds)
    if drafter is not None:
        stats.drafted_tokens, stats.accepted_tokens = drafter.drafted, drafter.accepted
    if not stats.finish_reason:
        stats.finish_reason = "cancelled"
    if decoder and not stop_filter.stopped:
        tail = stop_filter.push(decoder.flush()) + (stop_filter.flush() if not stop_filter.stopped else "")
        if tail:
            pieces.append(tail)
            if on_token:
                on_token(-1, tail)
    result.text = "".join(pieces)
    stats.peak_rss_bytes = peak_rss_bytes()
    return result
