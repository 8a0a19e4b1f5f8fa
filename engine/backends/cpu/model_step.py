"""The whole model for a few tokens in one compiled call: every layer, the final norm and the logits.

A token costs one call from Python (the per-layer call of 30+ arguments used
to dominate a small model's decode) and five parallel regions per layer:
q/k/v products, attention, the output product, gate and up with SiLU, the
down product. Layer weights come as typed lists, one per matrix kind, so one
compiled function serves every depth.

Up to ``MAX_TOKENS`` tokens go through together, each at its own position of its
own cache slot (``decode_batch``: drafted tokens to verify; ``decode_rows``: the
next tokens of several streams, one slot each): the weights stream from memory
once for all of them, and each token's logits are bit-identical to decoding it
alone at its position, because every kernel computes a token's outputs the same
way whatever tokens share its tile (``dot_wide``, ``dot_quant``, and
``attention`` for a token's heads of one KV group). The keys and values of all the tokens are written
before any attends, and a token at position p of slot s sees that slot's
positions 0..p, as it would decoded alone after the ones before it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .attention import attend_rows
from .decode_step import rms_norm, rope, store_kv
from .jit import KERNEL, PARALLEL
from .matmul import matmul, matmul_prepared, prepare_inputs, rows_block
from .matvec import row_unit

MAX_TOKENS = 16


@njit(**PARALLEL)
def _qkv(wq, sq, wk, sk, wv, sv, X, act, q, k, v):
    """q, k, v = X @ wq.T, X @ wk.T, X @ wv.T in one parallel region."""
    prepare_inputs(wq, X, act)
    tokens, unit = X.shape[0], row_unit(wq)
    nq, nk = (q.shape[1] + unit - 1) // unit, (k.shape[1] + unit - 1) // unit
    for piece in prange(nq + 2 * nk):
        if piece < nq:
            rows_block(wq, sq, X, act, q, piece * unit, 0, tokens)
        elif piece < nq + nk:
            rows_block(wk, sk, X, act, k, (piece - nq) * unit, 0, tokens)
        else:
            rows_block(wv, sv, X, act, v, (piece - nq - nk) * unit, 0, tokens)


@njit(**PARALLEL)
def _gate_up(w1, s1, w3, s3, X, act, gate, up):
    """gate = silu(X @ w1.T) * (X @ w3.T), a row step at a time."""
    prepare_inputs(w1, X, act)
    tokens, unit, n = X.shape[0], row_unit(w1), gate.shape[1]
    for piece in prange((n + unit - 1) // unit):
        r0 = piece * unit
        rows_block(w1, s1, X, act, gate, r0, 0, tokens)
        rows_block(w3, s3, X, act, up, r0, 0, tokens)
        for t in range(tokens):
            for i in range(r0, min(n, r0 + unit)):
                g = gate[t, i]
                gate[t, i] = g / (np.float32(1.0) + np.exp(-g)) * up[t, i]


@njit(**PARALLEL)
def _attention(q, k_cache, v_cache, layer, positions, slots, n_heads, scores, out):
    """Each token t's heads, a KV group at a time, over positions 0..positions[t] of its slot's cache."""
    tokens, kv_heads, head_dim = q.shape[0], k_cache.shape[2], k_cache.shape[4]
    rep = n_heads // kv_heads
    for job in prange(tokens * kv_heads):
        t, g = job // kv_heads, job % kv_heads
        s = slots[t]
        attend_rows(q[t].reshape(n_heads, head_dim)[g * rep:(g + 1) * rep], k_cache[s, layer, g],
                    v_cache[s, layer, g], positions[t] + 1, rep, scores[job * rep:(job + 1) * rep],
                    np.empty(rep, np.float32), out[t].reshape(n_heads, head_dim)[g * rep:(g + 1) * rep])


@njit(**KERNEL)
def _norm_rows(x, weight, eps, out):
    for t in range(x.shape[0]):
        rms_norm(x[t], weight, eps, out[t])


@njit(**KERNEL)
def forward_tokens(x, positions, slots, norms, WQ, SQ, WK, SK, WV, SV, WO, SO, W1, S1, W3, S3, W2, S2, heads, head_scales,
                   head_rows, k_cache, v_cache, cos, sin, eps, n_heads, buffers, act, logits):
    """x [T, hidden]: the tokens' embedded rows, token t at position positions[t] of cache slot slots[t]
    -> logits [T, vocab].

    k_cache / v_cache: [slot, layer, kv_head, position, head_dim]; norms: [2 * layers + 1, hidden] (attention, ffn norm per layer, then the final one); heads /
    head_scales / head_rows: the vocabulary matrix's parts and their row counts; buffers: scratch
    (h, q, kv, att, gate, up, o, scores) for MAX_TOKENS tokens; each token's cache row is written.
    """
    tokens = x.shape[0]
    h_buf, q_buf, kv_buf, att_buf, gate_buf, up_buf, o_buf, scores = buffers
    hidden, head_dim = x.shape[1], k_cache.shape[4]
    kv_heads = k_cache.shape[2]
    h, q, att = h_buf[:tokens, :hidden], q_buf[:tokens], att_buf[:tokens]
    k, v = kv_buf[:tokens, 0], kv_buf[:tokens, 1]
    gate, up, o = gate_buf[:tokens], up_buf[:tokens], o_buf[:tokens]
    for layer in range(len(WQ)):
        _norm_rows(x, norms[2 * layer], eps, h)
        _qkv(WQ[layer], SQ[layer], WK[layer], SK[layer], WV[layer], SV[layer], h, act, q, k, v)
        for t in range(tokens):
            p, s = positions[t], slots[t]
            rope(q[t], n_heads, head_dim, cos[p], sin[p])
            rope(kv_buf[t, 0], kv_heads, head_dim, cos[p], sin[p])
            store_kv(k_cache[s, layer], v_cache[s, layer], kv_buf[t], p, head_dim)
        _attention(q, k_cache, v_cache, layer, positions, slots, n_heads, scores, att)
        matmul(WO[layer], SO[layer], att, act, o)
        x += o
        _norm_rows(x, norms[2 * layer + 1], eps, h)
        _gate_up(W1[layer], S1[layer], W3[layer], S3[layer], h, act, gate, up)
        matmul(W2[layer], S2[layer], gate, act, o)
        x += o
    _norm_rows(x, norms[len(norms) - 1], eps, h)
    prepare_inputs(heads[0], h, act)
    first = 0
    for part in range(len(heads)):
        matmul_prepared(heads[part], head_scales[part], h, act, logits[:tokens, first:first + head_rows[part]])
        first += head_rows[part]
