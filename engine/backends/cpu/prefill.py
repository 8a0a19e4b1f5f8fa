"""A block of prompt tokens through one layer: matrix-matrix products and causal attention.

Prefill is compute-bound. The weight products run in the weights' own
format through ``matmul`` (tiles of several tokens per weight load; integer
products for packed formats), so a prompt token gets the very projections
decoding it would. Attention runs over the cache written so far for tiles of a
few tokens x one KV group's heads (``attention.attend_rows``: each key and value
row read once per tile), each row bit-identical to decoding that token alone.
"""

from __future__ import annotations

import numpy as np

from numba import njit, prange

from .attention import attend_rows
from .jit import PARALLEL
from .weights import Weight


class Activations:
    """A block's activations in 8-bit (or 16-bit) blocks (values, scales, sums) for packed weights, grown on demand."""

    def __init__(self, dtype=np.int8):
        self.dtype = dtype
        self.arrays = (np.empty(0, dtype), np.empty(0, np.float32), np.empty(0, np.int32))

    def get(self, tokens: int, k: int):
        blocks = (k + 31) // 32
        if self.arrays[0].size < tokens * k or self.arrays[1].size < tokens * blocks:
            self.arrays = (np.empty(tokens * k, self.dtype), np.empty(tokens * blocks, np.float32),
                           np.empty(tokens * blocks, np.int32))
        q, d, s = self.arrays
        return (q[:tokens * k].reshape(tokens, k), d[:tokens * blocks].reshape(tokens, blocks),
                s[:tokens * blocks].reshape(tokens, blocks))


def matmul(weight: Weight, x: np.ndarray, out: np.ndarray, act: Activations) -> np.ndarray:
    """out[T, n] = x[T, k] @ weight.T in the weight's own format (``matmul.matmul``)."""
    from .matmul import matmul as product

    act_block = act.get(x.shape[0], x.shape[1])
    for first, rows, data, scales in weight.row_parts():
        product(data, scales, x, act_block, out if len(weight.parts) == 1 else out[:, first:first + rows])
    return out


@njit(**PARALLEL)
def silu_times(gate, up):
    """gate = silu(gate) * up in place, as the decode step computes it, a token per job."""
    for t in prange(gate.shape[0]):
        for i in range(gate.shape[1]):
            g = gate[t, i]
            gate[t, i] = g / (np.float32(1.0) + np.exp(-g)) * up[t, i]


def rms_norm_rows(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return (x / np.sqrt(variance + np.float32(eps))) * weight


def rope_rows(m: np.ndarray, heads: int, head_dim: int, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate-half RoPE in place; m [T, heads * head_dim], cos/sin [T, head_dim / 2]."""
    half = head_dim // 2
    view = m.reshape(m.shape[0], heads, head_dim)
    x0, x1 = view[..., :half].copy(), view[..., half:].copy()
    c, s = cos[:, None, :], sin[:, None, :]
    view[..., :half] = x0 * c - x1 * s
    view[..., half:] = x1 * c + x0 * s


def write_cache(k_cache: np.ndarray, v_cache: np.ndarray, k: np.ndarray, v: np.ndarray, start: int,
                head_dim: int) -> None:
    """Store a block's keys/values (float32 [T, kv_dim]) at positions start.. (as fp16 bits or float32)."""
    t = k.shape[0]
    kv_heads = k_cache.shape[0]
    for cache, new in ((k_cache, k), (v_cache, v)):
        heads_first = new.reshape(t, kv_heads, head_dim).transpose(1, 0, 2)
        if cache.dtype == np.uint16:
            heads_first = heads_first.astype(np.float16).view(np.uint16)
        cache[:, start:start + t, :] = heads_first


# Query rows per attention tile: tokens x a KV group's heads (16 = 2 tokens of a 32/4-head GQA model, 16 of an
# MHA one); each key and value row is loaded once for all of them.
TILE_ROWS = 16


@njit(**PARALLEL)
def attend_block(q, k_cache, v_cache, start, n_heads, out):
    """Causal attention of a block (q [T, n_heads * hd], positions start..) over cache positions 0..start+T.

    A job is a tile of consecutive tokens x one KV group's heads (``attend_rows``); a token's row gets the bits
    decoding it alone gives, over only the keys it sees. Tile i is paired with tile n-1-i in one job so both
    threads get equal work (the later tokens see more keys).
    """
    tokens, kv_heads, head_dim = q.shape[0], k_cache.shape[0], k_cache.shape[2]
    rep = n_heads // kv_heads
    per_tile = max(1, TILE_ROWS // rep)
    tiles = (tokens + per_tile - 1) // per_tile
    pairs = (tiles + 1) // 2
    for job in prange(pairs * kv_heads):
        first, g = job // kv_heads, job % kv_heads
        rows = per_tile * rep
        rows_q, rows_out = np.empty((rows, head_dim), np.float32), np.empty((rows, head_dim), np.float32)
        scores, inv = np.empty((rows, start + tokens), np.float32), np.empty(rows, np.float32)
        last = tiles - 1 - first
        for tile in range(first, last + 1, max(1, last - first)):
            t0 = tile * per_tile
            n = (min(tokens, t0 + per_tile) - t0) * rep
            for r in range(n):
                t, h = t0 + r // rep, g * rep + r % rep
                rows_q[r] = q[t, h * head_dim:(h + 1) * head_dim]
            attend_rows(rows_q[:n], k_cache[g], v_cache[g], start + t0 + 1, rep, scores[:n], inv, rows_out[:n])
            for r in range(n):
                t, h = t0 + r // rep, g * rep + r % rep
                out[t, h * head_dim:(h + 1) * head_dim] = rows_out[r]
