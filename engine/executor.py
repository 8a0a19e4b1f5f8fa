"""The one interface between the generation loop and whatever runs the model.

The loop, the tokenizers and the chat templates only ever see this, so a new
backend (MindSpore graphs, JIT-compiled CPU kernels, MindFormers) is one new
class and nothing else changes. Positions are explicit: the executor keeps a
KV cache and the caller says where new tokens go, which lets the engine reuse
the cached prefix of a conversation between turns.
"""

from __future__ import annotations

import abc
from typing import Sequence

import numpy as np

from .config import ModelConfig


class Executor(abc.ABC):
    """Runs one LLaMA with a KV cache of ``max_seq_len`` positions."""

    name = "executor"
    config: ModelConfig
    max_seq_len: int

    @abc.abstractmethod
    def prefill(self, ids: Sequence[int], start_pos: int) -> np.ndarray:
        """Run ``ids`` at positions start_pos.. and return float32 logits [vocab] of the last one."""

    @abc.abstractmethod
    def decode(self, token: int, pos: int) -> np.ndarray:
        """Run one token at ``pos`` and return its float32 logits [vocab]."""

    def warmup(self) -> None:
        """Do any one-time compilation before the first request (optional)."""

    def reset(self) -> None:
        """Forget the cache; positions are explicit, so most executors need do nothing."""

    def close(self) -> None:
        """Free the weights now rather than at garbage collection."""
