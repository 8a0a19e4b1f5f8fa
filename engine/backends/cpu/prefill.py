"""A block of prompt tokens through one layer: matrix-matrix products and causal attention.

Prefill is compute-bound. The weight products run in the weights' own
format through ``matmul`` (tiles of several tokens per weight load; integer
products for packed formats), so a prompt token gets the very projections
decoding it would. Attention runs per token and head over the cache written so
far, as decoding runs it (``decode_step.attend_head``), in parallel.
"""

from __future__ import annotations

import math

import numpy as np

from numba import njit, prange

from .decode_step import attend_head
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


@njit(**PARALLEL)
def attend_block(q, k_cache, v_cache, start, n_heads, out):
    """Causal attention of a block (q [T, n_heads * hd], positions start..) over cache positions 0..start+T.

    Each token and head goes through the decode step's ``attend_head``: a prompt token attends exactly
    as it would decoded alone, over only the keys it sees. Token t is paired with token T-1-t in one job so
    both threads get equal work (the later tokens see more keys).
    """
    tokens, kv_heads, head_dim = q.shape[0], k_cache.shape[0], k_cache.shape[2]
    rep = n_heads // kv_heads
    scale = np.float32(1.0 / math.sqrt(head_dim))
    pairs = (tokens + 1) // 2
    for job in prange(pairs * n_heads):
        first, h = job // n_heads, job % n_heads
        g = h // rep
        scores = np.empty(start + tokens, np.float32)
        last = tokens - 1 - first
        for t in range(first, last + 1, max(1, last - first)):
            attend_head(q[t, h * head_dim:(h + 1) * head_dim], k_cache[g], v_cache[g], start + t + 1, scale,
                        scores, out[t, h * head_dim:(h + 1) * head_dim])
