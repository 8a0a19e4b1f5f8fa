"""The per-token pieces of a decode step: RMSNorm, RoPE, writing the KV cache, embedding.

``model_step`` strings them together with the weight products and attention
(``attention``) for a whole model; the KV cache holds fp16 bits (uint16) or float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from .jit import KERNEL, by_element_type, to_half_bits
from .matvec import widen_rows


@njit(**KERNEL)
def rms_norm(x, weight, eps, out):
    total = np.float32(0.0)
    for i in range(x.size):
        total += x[i] * x[i]
    scale = np.float32(1.0) / np.sqrt(total / np.float32(x.size) + np.float32(eps))
    for i in range(x.size):
        out[i] = x[i] * scale * weight[i]


@njit(**KERNEL)
def rope(vec, heads, head_dim, cos, sin):
    """Rotate-half RoPE in place on ``heads`` consecutive heads of ``vec`` (cos/sin: [head_dim/2])."""
    half = head_dim // 2
    for h in range(heads):
        base = h * head_dim
        for i in range(half):
            x0, x1 = vec[base + i], vec[base + half + i]
            vec[base + i] = x0 * cos[i] - x1 * sin[i]
            vec[base + half + i] = x1 * cos[i] + x0 * sin[i]


def store_kv(k_cache, v_cache, kv, pos, head_dim):
    """Write one token's keys and values (float32 [2, kv_dim]) into the cache at ``pos``."""
    raise NotImplementedError  # compiled as the kernel for the cache's type (by_element_type, below)


@njit(**KERNEL)
def _store_half(k_cache, v_cache, kv, pos, head_dim):
    for g in range(k_cache.shape[0]):
        for d in range(head_dim):
            k_cache[g, pos, d] = to_half_bits(kv[0, g * head_dim + d])
            v_cache[g, pos, d] = to_half_bits(kv[1, g * head_dim + d])


@njit(**KERNEL)
def _store_float(k_cache, v_cache, kv, pos, head_dim):
    for g in range(k_cache.shape[0]):
        for d in range(head_dim):
            k_cache[g, pos, d] = kv[0, g * head_dim + d]
            v_cache[g, pos, d] = kv[1, g * head_dim + d]


by_element_type(store_kv, 0, {types.uint16: _store_half}, _store_float)


@njit(**KERNEL)
def embed_row(W, S, row, out):
    """out = float32 row ``row`` of an embedding matrix in any format."""
    widen_rows(W, S, row, row + 1, out.reshape(1, out.size))
