"""One transformer layer for one token, fused into a single compiled call.

Per layer this is five parallel regions (q/k/v products, attention over the
KV cache, the output projection, gate+up with SiLU, the down projection) and
a few tiny serial steps (RMSNorm, RoPE, writing the cache), so a token costs
one Python call per layer, not dozens. Weights come as (data, scales) pairs
in any format ``matvec_rows`` knows; the KV cache holds fp16 bits (uint16) or float32.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types

from .jit import KERNEL, PARALLEL, by_element_type, to_half_bits, widen
from .matvec import ROWS, matvec_rows, prepare_input, widen_rows


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


@njit(**KERNEL)
def _attend_head(q, keys, values, length, scale, scores, out):
    """Softmax(q . K[:length] * scale) @ V[:length] for one head; K/V hold fp16 bits or float32."""
    hd = q.size
    best = np.float32(-np.inf)
    for s in range(length):
        key = keys[s]
        acc = np.float32(0.0)
        for d in range(hd):
            acc += q[d] * widen(key[d])
        acc *= scale
        scores[s] = acc
        best = max(best, acc)
    total = np.float32(0.0)
    for s in range(length):
        e = np.exp(scores[s] - best)
        scores[s] = e
        total += e
    for d in range(hd):
        out[d] = 0.0
    for s in range(length):
        p = scores[s] / total
        value = values[s]
        for d in range(hd):
            out[d] += p * widen(value[d])


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


@njit(**PARALLEL)
def decode_layer(x, pos, attn_norm, ffn_norm, wq, sq, wk, sk, wv, sv, wo, so, w1, s1, w3, s3, w2, s2,
                 k_cache, v_cache, cos, sin, eps, n_heads, kv_heads, h_buf, q_buf, kv_buf, att_buf,
                 gate_buf, up_buf, scores, xq, xs):
    """x (float32 [hidden]) <- layer(x) for the token at ``pos``; the cache rows at ``pos`` are written."""
    hidden = x.size
    head_dim = q_buf.size // n_heads
    rep = n_heads // kv_heads
    # attention block
    rms_norm(x, attn_norm, eps, h_buf)
    prepare_input(wq, h_buf, xq, xs)
    nq, nk = wq.shape[0], wk.shape[0]
    steps_q, steps_k = (nq + ROWS - 1) // ROWS, (nk + ROWS - 1) // ROWS
    for t in prange(steps_q + 2 * steps_k):
        if t < steps_q:
            matvec_rows(wq, sq, h_buf, xq, xs, q_buf, t * ROWS, min(nq, t * ROWS + ROWS))
        elif t < steps_q + steps_k:
            u = t - steps_q
            matvec_rows(wk, sk, h_buf, xq, xs, kv_buf[0], u * ROWS, min(nk, u * ROWS + ROWS))
        else:
            u = t - steps_q - steps_k
            matvec_rows(wv, sv, h_buf, xq, xs, kv_buf[1], u * ROWS, min(nk, u * ROWS + ROWS))
    rope(q_buf, n_heads, head_dim, cos[pos], sin[pos])
    rope(kv_buf[0], kv_heads, head_dim, cos[pos], sin[pos])
    store_kv(k_cache, v_cache, kv_buf, pos, head_dim)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for h in prange(n_heads):
        g = h // rep
        _attend_head(q_buf[h * head_dim:(h + 1) * head_dim], k_cache[g], v_cache[g], pos + 1, scale,
                     scores[h], att_buf[h * head_dim:(h + 1) * head_dim])
    steps_h = (hidden + ROWS - 1) // ROWS
    prepare_input(wo, att_buf, xq, xs)
    for t in prange(steps_h):
        matvec_rows(wo, so, att_buf, xq, xs, h_buf, t * ROWS, min(hidden, t * ROWS + ROWS))
    for i in range(hidden):
        x[i] += h_buf[i]
    # feed-forward block
    rms_norm(x, ffn_norm, eps, h_buf)
    prepare_input(w1, h_buf, xq, xs)
    nf = w1.shape[0]
    for t in prange((nf + ROWS - 1) // ROWS):
        r0, r1 = t * ROWS, min(nf, t * ROWS + ROWS)
        matvec_rows(w1, s1, h_buf, xq, xs, gate_buf, r0, r1)
        matvec_rows(w3, s3, h_buf, xq, xs, up_buf, r0, r1)
        for i in range(r0, r1):
            g = gate_buf[i]
            gate_buf[i] = g / (np.float32(1.0) + np.exp(-g)) * up_buf[i]
    prepare_input(w2, gate_buf, xq, xs)
    for t in prange(steps_h):
        matvec_rows(w2, s2, gate_buf, xq, xs, h_buf, t * ROWS, min(hidden, t * ROWS + ROWS))
    for i in range(hidden):
        x[i] += h_buf[i]


@njit(**KERNEL)
def embed_row(W, S, row, out):
    """out = float32 row ``row`` of an embedding matrix in any format."""
    widen_rows(W, S, row, row + 1, out.reshape(1, out.size))
