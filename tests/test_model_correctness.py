"""Every executor against the independent numpy forward pass (tests/reference_llama.py).

Variants: MindSpore (float32), the cpu executor over the stored fp16/bf16
weights with a float32 KV cache, and the same with its default fp16 KV cache.
Tolerance: logits agree to 1e-4 of their largest magnitude when everything is
float32 (only the summation order differs); 1e-3 with the fp16 KV cache (keys
and values rounded to fp16). Greedy tokens must agree exactly in every variant.
Whether RoPE's layout (rotate-half vs interleaved) is right is shown by the
built-in model answering correctly from real weights (test_builtin_model.py):
random test weights cannot tell the two layouts apart.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_llama as ref
from fixtures import make_executor

VARIANTS = {  # name -> (backend, kv cache, tolerance relative to max |logit|)
    "mindspore": ("mindspore", "float32", 1e-4),
    "cpu-kv32": ("cpu", "float32", 1e-4),
    "cpu-kv16": ("cpu", "float16", 1e-3),
}


def _close(got, want, rtol):
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def _greedy_with_executor(ex, prompt, n):
    logits = ex.prefill(prompt, 0)
    out, pos = [], len(prompt)
    for _ in range(n):
        token = int(np.argmax(logits))
        out.append(token)
        logits = ex.decode(token, pos)
        pos += 1
    return out


def _build(request, model):
    backend, kv_cache, rtol = VARIANTS[request.param]
    ckpt, yml, weights, spec = model
    ex = make_executor(backend, ckpt, yml, kv_cache=kv_cache)
    request.addfinalizer(ex.close)
    return ex, rtol


@pytest.fixture(scope="module", params=list(VARIANTS))
def llama2(request, llama2_tiny):
    return (*_build(request, llama2_tiny), llama2_tiny)


@pytest.fixture(scope="module", params=list(VARIANTS))
def llama3(request, llama3_chunked):
    return (*_build(request, llama3_chunked), llama3_chunked)


def test_llama2_fp16_prefill_logits_match_reference(llama2):
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    prompt = list(np.random.default_rng(1).integers(0, spec.vocab, 150))  # several prefill chunks/blocks
    _close(ex.prefill(prompt, 0), ref.forward(weights, spec.hp, prompt)[-1], rtol)


def test_llama2_fp16_greedy_matches_reference(llama2):
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    prompt = [spec.bos, 15, 300, 7, 999]
    assert _greedy_with_executor(ex, prompt, 24) == ref.greedy(weights, spec.hp, prompt, 24)


def test_decode_logits_match_reference_at_every_step(llama2):
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    ids = [spec.bos, 4, 8, 15, 16, 23, 42]
    ex.prefill(ids[:3], 0)
    for pos in range(3, len(ids)):
        _close(ex.decode(ids[pos], pos), ref.forward(weights, spec.hp, ids[:pos + 1])[-1], rtol)


def test_prefill_continues_from_a_cached_prefix(llama2):
    """A second prefill starting at start_pos reuses the cache: same logits as from scratch."""
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    ids = list(np.random.default_rng(2).integers(0, spec.vocab, 90))
    ex.prefill(ids[:70], 0)
    _close(ex.prefill(ids[70:], 70), ref.forward(weights, spec.hp, ids)[-1], rtol)


def test_llama3_bf16_gqa_chunked_checkpoint_greedy_matches_reference(llama3):
    ex, rtol, (ckpt, yml, weights, spec) = llama3
    prompt = [spec.bos, 5, 17, 99_999, 2_000_000, 42]
    _close(ex.prefill(prompt, 0), ref.forward(weights, spec.hp, prompt)[-1], rtol)
    assert _greedy_with_executor(ex, prompt, 8) == ref.greedy(weights, spec.hp, prompt, 8)


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_reference_rope_depends_only_on_relative_position(theta):
    """Guards the reference only: q.k after RoPE depends on p - q (true of either RoPE layout)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 1, 8))
    k = rng.standard_normal((1, 1, 8))
    a = (ref.rope(q, np.array([5]), theta) * ref.rope(k, np.array([3]), theta)).sum()
    b = (ref.rope(q, np.array([9]), theta) * ref.rope(k, np.array([7]), theta)).sum()
    assert abs(a - b) < 1e-9


@pytest.mark.parametrize("backend", ["mindspore", "cpu"])
def test_long_conversations_past_512_positions(llama2_tiny, tmp_path, backend):
    """MindSpore switches to larger attention windows past 512 positions, the cpu executor prefills in
    several blocks: results must not change."""
    import model_factory as mf

    ckpt, _, weights, spec = llama2_tiny
    yml = mf.write_yaml(spec, tmp_path / "long.yaml", seq_length=1100)
    ex = make_executor(backend, ckpt, yml, kv_cache="float32")
    if backend == "mindspore":
        assert [ex.window_for(n) for n in (1, 512, 513, 1025, 1100)] == [512, 512, 1024, 1164, 1164]
    ids = list(np.random.default_rng(3).integers(3, spec.vocab, 600))
    _close(ex.prefill(ids, 0), ref.forward(weights, spec.hp, ids)[-1], 1e-4)
    nxt = [7, 8]
    ex.decode(nxt[0], 600)
    _close(ex.decode(nxt[1], 601), ref.forward(weights, spec.hp, ids + nxt)[-1], 1e-4)
    ex.close()
