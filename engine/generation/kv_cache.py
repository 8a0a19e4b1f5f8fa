"""Bookkeeping of the executor's KV cache: which token ids it holds, and how a new prompt can reuse them.

The cache itself (keys and values per layer) lives in each executor, written at
explicit positions; this records what was written where (``-1``: nothing valid),
which is all the generation loop needs to skip a conversation's earlier turns.

``plan_reuse`` finds, besides the shared prefix, the stretches of the cache that the
new prompt holds further forward: what is left of a conversation after its oldest
turns were dropped to fit the context (a re-encoded answer may split it in a few
stretches). Moving them (``Executor.shift_kv``) costs a memory copy instead of a
prefill. Its rows then keep what the dropped turns
contributed to them in the deeper layers, as llama.cpp's context shift does: the
answer after a shift can differ from the one after computing the kept turns afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

HOLE = -1            # a cache position whose rows are not valid for any token
MIN_SHIFT = 16       # fewer tokens are computed rather than moved; and no stretch moves by less
_GRAM = 8            # tokens that must agree to consider a stretch


@dataclass(frozen=True)
class ReusePlan:
    """prompt[:keep] is cached in place; each move (from, to, count) is a stretch of the prompt at ``to``
    that the cache holds at ``from`` (to be moved there). What is left, ``fresh()``, must be computed."""

    keep: int
    moves: tuple[tuple[int, int, int], ...] = ()

    @property
    def moved(self) -> int:
        return sum(count for _, _, count in self.moves)

    @property
    def cached(self) -> int:
        return self.keep + self.moved

    def fresh(self, length: int) -> list[tuple[int, int]]:
        """The position ranges (start, stop) still to compute, in order, for a prompt of ``length``."""
        ranges, at = [], self.keep
        for _, to, count in self.moves:
            if to > at:
                ranges.append((at, to))
            at = to + count
        return ranges + [(at, length)]


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def plan_reuse(cached: Sequence[int], prompt: Sequence[int], can_shift: bool) -> ReusePlan:
    """The most of ``prompt`` the cache can supply; at least its last token is left to compute.

    Stretches are only moved towards the start, by at least ``MIN_SHIFT`` positions: what the dropped
    turns left. A token or two that a re-encoded answer shifts is recomputed instead, exactly as before.
    """
    last = len(prompt) - 1                       # its logits are needed: never taken from the cache
    keep = min(shared_prefix(cached, prompt), last)
    if not can_shift or last - keep < MIN_SHIFT or len(cached) - keep < MIN_SHIFT:
        return ReusePlan(keep)
    starts: dict[tuple[int, ...], list[int]] = {}
    for j in range(keep + 1, len(cached) - _GRAM + 1):
        starts.setdefault(tuple(cached[j:j + _GRAM]), []).append(j)
    moves, i = [], keep
    while i + _GRAM <= last:
        best = (0, 0)                            # (length, from)
        for j in starts.get(tuple(prompt[i:i + _GRAM]), ())[:4]:
            if j - i < MIN_SHIFT:
                continue
            n = _GRAM
            while i + n < last and j + n < len(cached) and cached[j + n] == prompt[i + n]:
                n += 1
            best = max(best, (n, j))
        if best[0]:
            moves.append((best[1], i, best[0]))
            i += best[0]
        else:
            i += 1
    if sum(count for _, _, count in moves) < MIN_SHIFT:
        return ReusePlan(keep)
    return ReusePlan(keep, tuple(moves))


class KVCacheState:
    """Which token id the executor's cache holds at each position (``HOLE`` where nothing valid is)."""

    def __init__(self):
        self.ids: list[int] = []

    def valid_prefix(self) -> list[int]:
        """The ids before the first hole: what a saved state of this cache can hold."""
        try:
            return self.ids[:self.ids.index(HOLE)]
        except ValueError:
            return list(self.ids)

    def reusable_prefix(self, prompt: Sequence[int]) -> int:
        return min(shared_prefix(self.ids, prompt), len(prompt) - 1)  # recompute at least one token

    def plan(self, prompt: Sequence[int], can_shift: bool) -> ReusePlan:
        return plan_reuse(self.ids, prompt, can_shift)

    def after_moves(self, prompt: Sequence[int], plan: ReusePlan) -> None:
        """Record a plan's moves as done: the kept prefix, then each moved stretch, holes where to compute."""
        ids = list(prompt[:plan.keep])
        for _, to, count in plan.moves:
            ids += [HOLE] * (to - len(ids)) + list(prompt[to:to + count])
        self.ids = ids

    def written(self, start: int, ids: Sequence[int], keep_after: bool = False) -> None:
        """``ids`` were computed at positions start..; later positions stay valid only with ``keep_after``
        (a moved stretch waiting behind the part computed before it), else they depended on what was there."""
        if len(self.ids) < start:
            self.ids += [HOLE] * (start - len(self.ids))
        end = start + len(ids)
        self.ids = self.ids[:start] + list(ids) + (self.ids[end:] if keep_after else [])
