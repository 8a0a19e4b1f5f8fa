"""Attention kernel speed: the tiled kernel (``attention.attend_rows``) against the one it replaced (one token and
head at a time, every key/value row re-read and re-widened per head), A/B in turns in one process.

Shapes: the 0.85B GQA model (32 heads, 4 KV heads, head_dim 64) and LLaMA3-8b (32/8, 128); a 2,000-token prompt
block from position 0, a 512-token block after 1,488 cached positions, and decode (1 token x 32 heads over 2,000
cached positions). Reports GFLOP/s (4 * head_dim per query row and key: QK^T and P.V) and the ratio, best of
``--rounds`` (a decode round: the mean of 50 calls). The machine may be busy: run it under ``nice`` beside nothing heavy, and compare only within a run.

Usage: python bench/attention.py [--rounds 5] [--cache fp16|float32] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backends.cpu import jit  # noqa: E402  (sets up numba's cache first)
from engine.backends.cpu.jit import KERNEL, PARALLEL, widen  # noqa: E402
from engine.backends.cpu.llvm_ir import ISA  # noqa: E402
from engine.backends.cpu.model_step import _attention  # noqa: E402
from engine.backends.cpu.prefill import attend_block  # noqa: E402
from numba import njit, prange  # noqa: E402

_FREE = dict(KERNEL, cache=False)


@njit(**_FREE)
def _old_head(q, keys, values, length, scale, scores, out):
    """The replaced kernel: one query row, every key and value row widened for it alone."""
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


@njit(**dict(PARALLEL, cache=False))
def _old_block(q, k_cache, v_cache, start, n_heads, out):
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
            _old_head(q[t, h * head_dim:(h + 1) * head_dim], k_cache[g], v_cache[g], start + t + 1, scale,
                      scores, out[t, h * head_dim:(h + 1) * head_dim])


@njit(**dict(PARALLEL, cache=False))
def _old_decode(q, k_cache, v_cache, position, n_heads, scores, out):
    kv_heads, head_dim = k_cache.shape[0], k_cache.shape[2]
    rep = n_heads // kv_heads
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for h in prange(n_heads):
        _old_head(q[0, h * head_dim:(h + 1) * head_dim], k_cache[h // rep], v_cache[h // rep], position + 1, scale,
                  scores[h], out[0, h * head_dim:(h + 1) * head_dim])


def _cache(rng, kv_heads, positions, head_dim, kind):
    k = (rng.standard_normal((kv_heads, positions, head_dim)) * 0.5).astype(np.float16)
    v = rng.standard_normal((kv_heads, positions, head_dim)).astype(np.float16)
    if kind == "fp16":
        return k.view(np.uint16), v.view(np.uint16)
    return k.astype(np.float32), v.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache", choices=("fp16", "float32"), default="fp16")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(f"threads {jit.use_threads(args.threads)}, kernels {ISA}, KV cache {args.cache}")
    rng = np.random.default_rng(0)
    for name, heads, kv_heads, hd in (("0.85B 32/4 hd64", 32, 4, 64), ("8B 32/8 hd128", 32, 8, 128)):
        k, v = _cache(rng, kv_heads, 2048, hd, args.cache)
        cases = []
        for start, tokens in ((0, 2000), (1488, 512)):
            q = rng.standard_normal((tokens, heads * hd)).astype(np.float32)
            old_out, new_out = np.zeros_like(q), np.zeros_like(q)
            flops = 4 * hd * heads * sum(start + t + 1 for t in range(tokens))
            cases.append((f"prefill {tokens} from {start}", flops, 1,
                          lambda q=q, s=start, o=old_out: _old_block(q, k, v, s, heads, o),
                          lambda q=q, s=start, o=new_out: attend_block(q, k, v, s, heads, o), old_out, new_out))
        position = 1999
        q = rng.standard_normal((1, heads * hd)).astype(np.float32)
        old_out, new_out = np.zeros_like(q), np.zeros_like(q)
        scores = np.zeros((heads, 2048), np.float32)
        k5, v5 = k[None, None], v[None, None]
        positions, slots = np.array([position]), np.array([0])
        cases.append(("decode 1 token at 2000", 4 * hd * heads * (position + 1), 50,
                      lambda: _old_decode(q, k, v, position, heads, scores, old_out),
                      lambda: _attention(q, k5, v5, 0, positions, slots, heads, scores, new_out), old_out, new_out))
        for label, flops, repeat, old, new, old_out, new_out in cases:
            old(), new()
            times = {"old": [], "new": []}
            for _ in range(args.rounds):
                for which, fn in (("old", old), ("new", new)):
                    began = time.perf_counter()
                    for _ in range(repeat):
                        fn()
                    times[which].append((time.perf_counter() - began) / repeat)
            t_old, t_new = min(times["old"]), min(times["new"])
            print(f"{name:16s} {label:24s} old {flops / t_old / 1e9:6.1f} GFLOP/s ({t_old * 1e3:8.2f} ms)  "
                  f"new {flops / t_new / 1e9:6.1f} GFLOP/s ({t_new * 1e3:8.2f} ms)  x{t_old / t_new:.2f}  "
                  f"max |diff| {np.abs(old_out - new_out).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
