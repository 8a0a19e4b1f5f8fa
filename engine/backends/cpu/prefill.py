"""A block of prompt tokens through one layer: matrix-matrix products and causal attention.

Prefill is compute-bound. The weight products run in the weights' own
format through ``matmul`` (tiles of several tokens per weight load; integer
products for packed formats), so a prompt token gets the very projections
decoding it would. Attention is one BLAS product per key/value head over the
cache written so far.
"""

from __future__ import annotations

import math

import numpy as np

from .matvec import widen_tile
from .weights import Weight

class TileBuffer:
    """One reusable float32 scratch tile, grown on demand."""

    def __init__(self):
        self.array = np.empty(0, np.float32)

    def get(self, rows: int, cols: int) -> np.ndarray:
        if self.array.size < rows * cols:
            self.array = np.empty(rows * cols, np.float32)
        return self.array[:rows * cols].reshape(rows, cols)


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


def rms_norm_rows(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return (x / np.sqrt(variance + np.float32(eps))) * weight


def swiglu_rows(gate: np.ndarray, up: np.ndarray, rows: int = 32) -> None:
    """gate <- silu(gate) * up, a few rows at a time: numpy's temporaries of a whole 512-token block
    (three of [512, ffn] float32) were ~90 MB of a 7-8B model's peak memory; per element the same values."""
    for r in range(0, gate.shape[0], rows):
        g = gate[r:r + rows]
        g *= up[r:r + rows] / (np.float32(1.0) + np.exp(-g))


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


def attend_block(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, start: int, n_heads: int,
                 tiles: TileBuffer) -> np.ndarray:
    """Causal attention of a block (q [T, n_heads * hd], positions start..) over cache positions 0..start+T."""
    t = q.shape[0]
    kv_heads, _, head_dim = k_cache.shape
    rep = n_heads // kv_heads
    end = start + t
    out = np.empty_like(q)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    # key s is visible to query row i when s <= start + i
    hidden = np.arange(end)[None, :] > (start + np.arange(t))[:, None]
    buf = tiles.get(2 * end, head_dim)
    keys, values = buf[:end], buf[end:]
    for g in range(kv_heads):
        widen_tile(k_cache[g], np.empty((0, 0), np.float32), 0, end, keys)
        widen_tile(v_cache[g], np.empty((0, 0), np.float32), 0, end, values)
        qg = q[:, g * rep * head_dim:(g + 1) * rep * head_dim].reshape(t, rep, head_dim).transpose(1, 0, 2)
        scores = (qg.reshape(rep * t, head_dim) @ keys.T).reshape(rep, t, end)
        scores *= scale
        scores[:, hidden] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out[:, g * rep * head_dim:(g + 1) * rep * head_dim] = (scores @ values).transpose(1, 0, 2).reshape(t, -1)
    return out
