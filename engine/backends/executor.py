"""The one interface between the generation loop and whatever runs the model.

The loop, the tokenizers and the chat templates only ever see this, so a new
backend (MindSpore graphs, JIT-compiled CPU kernels, MindFormers) is one new
class plus one registry entry (``registry.py``) and nothing else changes.
Positions are explicit: the executor keeps a KV cache and the caller says
where new tokens go, which lets the engine reuse the cached prefix of a
conversation between turns (when the executor says it can). Executors that
can also hand out and take back cached rows (``supports_kv_rows``) let the
engine save a conversation's state to disk, restore it, and shift it when the
conversation outgrows the context; the others recompute instead.

An executor owns the weight source it was given: it may keep zero-copy views
into the memory map, so it, not the loader, closes the source in ``close()``.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.config import ModelConfig


class PrefillCancelled(Exception):
    """Raised by ``prefill`` when ``cancel`` was set between chunks.

    ``computed`` tokens of the request (from ``start_pos``) are in the cache and
    valid; the rest were never written, so the caller must recompute them.
    """

    def __init__(self, computed: int):
        super().__init__(f"prefill cancelled after {computed} tokens")
        self.computed = computed


@dataclass(frozen=True)
class MemoryNeed:
    """What an executor will hold in RAM for a model, by part, before it loads anything."""

    weights: int
    kv_cache: int
    overhead: int
    description: str = ""          # e.g. "bfloat16 weights as stored, float16 KV cache"

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def summary(self) -> str:
        gb = 1e9
        return (f"{self.total / gb:.1f} GB ({self.weights / gb:.1f} GB weights, {self.kv_cache / gb:.1f} GB "
                f"KV cache, {self.overhead / gb:.1f} GB runtime)")


class Executor(abc.ABC):
    """Runs one LLaMA with a KV cache of ``max_seq_len`` positions."""

    name = "executor"
    # Can prefill start at any position of a cache filled by earlier calls? If not, the
    # generation loop recomputes the whole prompt from position 0 every time.
    supports_prefix_reuse = True
    config: ModelConfig
    max_seq_len: int
    device: str = "CPU"
    weight_format: str = "float32"   # what the matrix products read: float32, float16, bfloat16, int8

    # Construction: ExecutorClass(cfg, source, options, progress=None, cancel=None), where options is a
    # backends.ExecutorOptions, progress(done_bytes, total_bytes) reports loading, and a set ``cancel``
    # event stops loading with errors.Cancelled (closing the source).

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        """None when this executor can run on ``device`` ("CPU"/"GPU") here; otherwise why not."""
        return None

    @classmethod
    @abc.abstractmethod
    def estimate_memory(cls, cfg: ModelConfig, source, options) -> MemoryNeed:
        """RAM this executor will hold for ``cfg`` read from ``source`` with ``options``."""

    @classmethod
    def prepare(cls, cfg: ModelConfig, source, options, progress=None, cancel: threading.Event | None = None) -> None:
        """One-time work before the weights load, where it costs the loaded process nothing (the cpu backend
        compiles its kernels in a child process on the first start); ``progress(stage, done, total)`` shows it,
        a set ``cancel`` raises errors.Cancelled."""

    @abc.abstractmethod
    def prefill(self, ids: Sequence[int], start_pos: int, cancel: threading.Event | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Run ``ids`` at positions start_pos.. and return float32 logits [vocab] of the last one.

        Long prompts run in chunks; ``cancel`` is checked between them, and a set
        event raises ``PrefillCancelled`` saying how many tokens were computed.
        ``progress(done)`` is told, now and then, about how many of ``ids`` are done.
        """

    @abc.abstractmethod
    def decode(self, token: int, pos: int) -> np.ndarray:
        """Run one token at ``pos`` and return its float32 logits [vocab]."""

    def decode_batch(self, tokens: Sequence[int], pos: int) -> np.ndarray:
        """Run up to 16 tokens at positions pos, pos + 1, ... and return their float32 logits [T, vocab].

        Row t is bit-identical to ``decode(tokens[t], pos + t)`` after the tokens before it (batch
        invariance), so checking drafted tokens or serving several streams never changes an answer;
        an executor that can do better than one token at a time overrides this (cpu: one weight pass).
        """
        return np.stack([self.decode(int(token), pos + t) for t, token in enumerate(tokens)])

    def warmup(self, progress=None) -> None:
        """Do any one-time compilation before the first request; ``progress(stage, done, total)`` shows it."""

    def reset(self) -> None:
        """Forget the cache; positions are explicit, so most executors need do nothing."""

    def close(self) -> None:
        """Free the weights (and close the weight source) now rather than at garbage collection."""

    # -- optional: the cache's rows (a conversation's state on disk, the context shift) -------------
    # Rows are arrays [layer, kv_head, position, head_dim] of ``kv_element_type``; keys after RoPE.
    supports_kv_rows = False
    kv_element_type = "float32"      # "float16" or "float32": what the cache holds

    def export_kv(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the cached keys and values at positions start..stop-1."""
        raise NotImplementedError(f"the {self.name} backend cannot hand out its KV cache")

    def import_kv(self, start: int, keys: np.ndarray, values: np.ndarray) -> None:
        """Write rows (as ``export_kv`` gives them) at positions start.."""
        raise NotImplementedError(f"the {self.name} backend cannot take rows into its KV cache")

    def shift_kv(self, src: int, dst: int, count: int) -> None:
        """Move ``count`` cached positions from src.. to dst.., keys re-rotated for their new place."""
        raise NotImplementedError(f"the {self.name} backend cannot move its KV cache")
