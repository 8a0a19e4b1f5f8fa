"""An independent float32 (float64 optional) numpy LLaMA forward pass.

Written from the LLaMA paper / Meta's reference code, sharing nothing with
``engine``: it never imports it. Weights are a dict using MindFormers names and
[out, in] layouts. No KV cache: every call recomputes the whole sequence,
which is slow but obviously right.
"""

from __future__ import annotations

import numpy as np


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def inverse_frequencies(head_dim, theta):
    return 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope(x, positions, theta, inv_freq=None):
    """x [T, heads, hd], rotate-half layout (HF / MindFormers); ``inv_freq`` overrides theta's frequencies."""
    hd = x.shape[-1]
    inv = inverse_frequencies(hd, theta) if inv_freq is None else np.asarray(inv_freq, np.float64)
    ang = np.outer(positions, inv)
    ang = np.concatenate([ang, ang], axis=-1)[:, None, :]
    return x * np.cos(ang).astype(x.dtype) + rotate_half(x) * np.sin(ang).astype(x.dtype)


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(weights: dict, hp: dict, ids: list[int], dtype=np.float32, inputs=None) -> np.ndarray:
    """Logits [T, vocab] for the whole sequence. hp: dim, layers, heads, kv_heads, eps, theta, tied,
    and optionally inv_freq (RoPE's inverse frequencies, e.g. after long-context scaling).
    ``inputs``: what each matrix product sees of its input rows (e.g. their 8-bit rounding); default as is."""
    w = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
    inputs = inputs or (lambda rows: rows)
    t = len(ids)
    heads, kvh = hp["heads"], hp["kv_heads"]
    hd = hp["dim"] // heads
    x = w["model.tok_embeddings.embedding_weight"][np.asarray(ids)]
    pos = np.arange(t)
    causal = np.triu(np.full((t, t), -np.inf, dtype=dtype), 1)
    for i in range(hp["layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "attention_norm.weight"], hp["eps"])
        h = inputs(h)
        q = (h @ w[p + "attention.wq.weight"].T).reshape(t, heads, hd)
        k = (h @ w[p + "attention.wk.weight"].T).reshape(t, kvh, hd)
        v = (h @ w[p + "attention.wv.weight"].T).reshape(t, kvh, hd)
        q, k = rope(q, pos, hp["theta"], hp.get("inv_freq")), rope(k, pos, hp["theta"], hp.get("inv_freq"))
        k = np.repeat(k, heads // kvh, axis=1)
        v = np.repeat(v, heads // kvh, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + causal
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(t, heads * hd)
        x = x + inputs(attn) @ w[p + "attention.wo.weight"].T
        h = inputs(rms_norm(x, w[p + "ffn_norm.weight"], hp["eps"]))
        ff = silu(h @ w[p + "feed_forward.w1.weight"].T) * (h @ w[p + "feed_forward.w3.weight"].T)
        x = x + inputs(ff) @ w[p + "feed_forward.w2.weight"].T
    x = inputs(rms_norm(x, w["model.norm_out.weight"], hp["eps"]))
    head = w["model.tok_embeddings.embedding_weight"] if hp.get("tied") else w["lm_head.weight"]
    return x @ head.T


def greedy(weights: dict, hp: dict, prompt: list[int], n: int, stop: set[int] = frozenset(),
           limit: int | None = None, inputs=None) -> list[int]:
    """Greedy continuation, recomputing from scratch each step; ``limit``: choose among ids below it only."""
    ids = list(prompt)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(forward(weights, hp, ids, inputs=inputs)[-1][:limit]))
        out.append(nxt)
        ids.append(nxt)
        if nxt in stop:
            break
    return out


def answer(weights: dict, hp: dict, prompt: list[int], n: int, stop: set[int], limit: int | None = None) -> list[int]:
    """What an engine reports for a greedy answer: at most n tokens, ending before the first stop token."""
    out = greedy(weights, hp, prompt, n, stop=stop, limit=limit)
    return out[:-1] if out and out[-1] in stop else out
