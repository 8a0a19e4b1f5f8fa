"""Bookkeeping of the executor's KV cache: which token ids it holds, so a new prompt skips their shared prefix.

The cache itself (keys and values per layer) lives in each executor, written at
explicit positions; this records what was written there, which is all the
generation loop needs to reuse a conversation's earlier turns.
"""

from __future__ import annotations

from typing import Sequence


class KVCacheState:
    """Which token ids the executor's cache holds, so a new prompt can skip its shared prefix."""

    def __init__(self):
        self.ids: list[int] = []

    def reusable_prefix(self, prompt: Sequence[int]) -> int:
        n = 0
        for a, b in zip(self.ids, prompt):
            if a != b:
                break
            n += 1
        return min(n, len(prompt) - 1)  # recompute at least one token to get its logits
