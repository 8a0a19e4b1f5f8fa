"""The attention kernel (``attention.attend_rows``) and its callers: a plain numpy softmax attention as the
reference, and batch invariance - a query row's bits alone, inside row tiles of every size and place, in a prefill
block of any cut and in a decode step are the same. Both KV cache types, MHA and GQA, head_dim 64 and 128, and
every CPU variant (each in a child process, as ``LLAMA_DESK_CPU_KERNELS`` must be set before the kernels compile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures import ROOT

# (query heads, KV heads, head_dim): GQA 4 per group, MHA, LLaMA3-8b's 4 per group at 128, and a head_dim
# that is no multiple of the vector width (the one-lane leftovers).
SHAPES = ((8, 2, 64), (3, 3, 128), (8, 2, 128), (4, 2, 72))
CACHES = ("fp16", "float32")


def reference(q: np.ndarray, keys: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """softmax(q . K[:length] / sqrt(hd)) @ V[:length] in float64, straight from the definition."""
    k, v = keys[:length].astype(np.float64), values[:length].astype(np.float64)
    scores = k @ q.astype(np.float64) / np.sqrt(q.size)
    weights = np.exp(scores - scores.max())
    return (weights / weights.sum()) @ v


def _cache(rng, kv_heads, positions, hd, kind):
    """A KV cache (as stored: fp16 bits or float32) and its values as float32 for the reference."""
    k = (rng.standard_normal((kv_heads, positions, hd)) * 0.7).astype(np.float16)
    v = rng.standard_normal((kv_heads, positions, hd)).astype(np.float16)
    if kind == "fp16":
        return k.view(np.uint16), v.view(np.uint16), k.astype(np.float32), v.astype(np.float32)
    return k.astype(np.float32), v.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def results() -> dict:
    """Everything the tests check, computed by the kernels of this process's CPU variant (JSON-able)."""
    from engine.backends.cpu.attention import attend_rows
    from engine.backends.cpu.llvm_ir import ISA
    from engine.backends.cpu.model_step import _attention
    from engine.backends.cpu.prefill import attend_block

    rng = np.random.default_rng(5)
    out = {"isa": ISA, "cases": []}
    for heads, kv_heads, hd in SHAPES:
        for kind in CACHES:
            rep = heads // kv_heads
            start, tokens = 37, 21
            positions = start + tokens
            k, v, k32, v32 = _cache(rng, kv_heads, positions + 3, hd, kind)
            q = rng.standard_normal((tokens, heads * hd)).astype(np.float32) * 2
            case = {"shape": [heads, kv_heads, hd], "cache": kind}
            # a prefill block whole, and cut in three
            whole = np.zeros_like(q)
            attend_block(q, k, v, start, heads, whole)
            cut = np.zeros_like(q)
            for a, b in ((0, 1), (1, 9), (9, tokens)):
                attend_block(q[a:b].copy(), k, v, start + a, heads, cut[a:b])
            # decode: each token alone, and all together as one batched step
            k5, v5 = k[None, None], v[None, None]
            scores = np.zeros((16 * heads, positions + 3), np.float32)
            alone = np.zeros_like(q)
            for t in range(tokens):
                _attention(q[t:t + 1], k5, v5, 0, np.array([start + t]), np.array([0]), heads, scores, alone[t:t + 1])
            batch = np.zeros_like(q)
            order = rng.permutation(tokens)[:16]
            _attention(q[order], k5, v5, 0, np.array(start + order), np.zeros(16, np.int64), heads, scores, batch[:16])
            batch = batch[:16][np.argsort(order)]
            case["prefill_cut"] = bool(np.array_equal(whole.view(np.uint32), cut.view(np.uint32)))
            case["decode_alone"] = bool(np.array_equal(whole.view(np.uint32), alone.view(np.uint32)))
            case["decode_batch"] = bool(np.array_equal(whole[np.sort(order)].view(np.uint32), batch.view(np.uint32)))
            want = np.array([[reference(q[t, h * hd:(h + 1) * hd], k32[h // rep], v32[h // rep], start + t + 1)
                              for h in range(heads)] for t in range(tokens)]).reshape(tokens, heads * hd)
            case["error"] = float(np.abs(whole - want).max())
            # one row alone, and at every place of tiles of 1..13 rows (all tile shapes and their leftovers)
            rows = q.reshape(tokens * heads, hd)[:13].copy()
            length = start + 5      # the longest row of a tile (12 more) still inside the cache
            single = np.zeros((1, hd), np.float32)
            attend_rows(rows[:1], k[0], v[0], length, 1, np.zeros((1, length), np.float32), np.zeros(1, np.float32),
                        single)
            same = True
            for n in range(1, 14):
                for place in range(n):
                    tile = rows[:n].copy()
                    tile[place] = rows[0]
                    got = np.zeros((n, hd), np.float32)
                    # rows of one length (a token's heads) and rows one longer per row (prefill tokens)
                    for per in (n, 1):
                        first = length - place // per
                        attend_rows(tile, k[0], v[0], first, per, np.zeros((n, first + (n - 1) // per), np.float32),
                                    np.zeros(n, np.float32), got)
                        same &= bool(np.array_equal(got[place].view(np.uint32), single[0].view(np.uint32)))
            case["tiles"] = same
            out["cases"].append(case)
    return out


_CHILD = "import json, sys; sys.path.insert(0, 'tests'); import test_attention; print(json.dumps(test_attention.results()))"


def _run_variant(variant: str, home) -> dict:
    env = dict(os.environ, LLAMA_DESK_HOME=str(home), PYTHONPATH=str(ROOT), LLAMA_DESK_CPU_KERNELS=variant)
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(got: dict) -> None:
    assert len(got["cases"]) == len(SHAPES) * len(CACHES)
    for case in got["cases"]:
        label = (got["isa"], case["shape"], case["cache"])
        assert case["error"] < 2e-5, label
        assert case["prefill_cut"] and case["decode_alone"] and case["decode_batch"] and case["tiles"], (label, case)


def test_rows_match_numpy_attention_and_keep_their_bits_in_every_tile_block_and_batch():
    _check(results())


@pytest.mark.parametrize("variant", ["avx2", "generic"])
def test_every_cpu_variant_matches_and_keeps_the_bits(variant, tmp_path):
    """AVX2 (8 lanes) and plain vectors (a CPU without AVX2/FMA: LLVM picks the instructions)."""
    got = _run_variant(variant, tmp_path)
    order = ("avx512", "avxvnni", "avx2", "generic")
    if order.index(got["isa"]) < order.index(variant):
        pytest.skip(f"this CPU cannot run the {variant} kernels")
    _check(got)
