"""Every executor against the independent numpy forward pass (tests/reference_llama.py).

Variants: MindSpore (float32), the cpu executor over the stored fp16/bf16
weights with a float32 KV cache, and the same with its default fp16 KV cache.
Tolerance: logits agree to 1e-4 of their largest magnitude when everything is
float32 (only the summation order differs); 1e-3 with the fp16 KV cache (keys
and values rounded to fp16). Greedy tokens must agree exactly in every variant.
Random test weights cannot tell RoPE's two layouts (rotate-half, interleaved)
apart in a whole model, so the layout is checked on its own: the reference's
rotation against the formula, and each executor's rotation against the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_llama as ref
from fixtures import assert_close, greedy_ids, make_executor

VARIANTS = {  # name -> (backend, kv cache, tolerance relative to max |logit|)
    "mindspore": ("mindspore", "float32", 1e-4),
    "cpu-kv32": ("cpu", "float32", 1e-4),
    "cpu-kv16": ("cpu", "float16", 1e-3),
}


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
    assert_close(ex.prefill(prompt, 0), ref.forward(weights, spec.hp, prompt)[-1], rtol)


def test_llama2_fp16_greedy_matches_reference(llama2):
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    prompt = [spec.bos, 15, 300, 7, 999]
    assert greedy_ids(ex, prompt, 24) == ref.greedy(weights, spec.hp, prompt, 24)


def test_decode_logits_match_reference_at_every_step(llama2):
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    ids = [spec.bos, 4, 8, 15, 16, 23, 42]
    ex.prefill(ids[:3], 0)
    for pos in range(3, len(ids)):
        assert_close(ex.decode(ids[pos], pos), ref.forward(weights, spec.hp, ids[:pos + 1])[-1], rtol)


def test_prefill_continues_from_a_cached_prefix(llama2):
    """A second prefill starting at start_pos reuses the cache: same logits as from scratch."""
    ex, rtol, (ckpt, yml, weights, spec) = llama2
    ids = list(np.random.default_rng(2).integers(0, spec.vocab, 90))
    ex.prefill(ids[:70], 0)
    assert_close(ex.prefill(ids[70:], 70), ref.forward(weights, spec.hp, ids)[-1], rtol)


def test_llama3_bf16_gqa_chunked_checkpoint_greedy_matches_reference(llama3):
    ex, rtol, (ckpt, yml, weights, spec) = llama3
    prompt = [spec.bos, 5, 17, 99_999, 2_000_000, 42]
    assert_close(ex.prefill(prompt, 0), ref.forward(weights, spec.hp, prompt)[-1], rtol)
    assert greedy_ids(ex, prompt, 8) == ref.greedy(weights, spec.hp, prompt, 8)


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_reference_rope_is_rotate_half(theta):
    """Guard the reference itself: dimension i turns with dimension i + hd/2 (not i + 1, the interleaved
    layout), by the angle position * theta^(-2i/hd); and dot products see only the relative position."""
    rng = np.random.default_rng(0)
    hd, pos = 8, 5
    x = rng.standard_normal((1, 1, hd))
    angle = pos * theta ** (-np.arange(0, hd, 2) / hd)
    first, second = x[0, 0, :hd // 2], x[0, 0, hd // 2:]
    rotate_half = np.concatenate([first * np.cos(angle) - second * np.sin(angle),
                                  second * np.cos(angle) + first * np.sin(angle)])
    even, odd = x[0, 0, 0::2], x[0, 0, 1::2]
    interleaved = np.stack([even * np.cos(angle) - odd * np.sin(angle),
                            odd * np.cos(angle) + even * np.sin(angle)], axis=-1).reshape(-1)
    got = ref.rope(x, np.array([pos]), theta)[0, 0]
    np.testing.assert_allclose(got, rotate_half, rtol=0, atol=1e-12)
    assert not np.allclose(got, interleaved, atol=1e-3)
    k = rng.standard_normal((1, 1, hd))
    a = (ref.rope(x, np.array([5]), theta) * ref.rope(k, np.array([3]), theta)).sum()
    b = (ref.rope(x, np.array([9]), theta) * ref.rope(k, np.array([7]), theta)).sum()
    assert abs(a - b) < 1e-9


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_executor_ropes_are_the_references_rotate_half(theta):
    """Each executor's own rotation (MindSpore's, the cpu prefill's and the cpu decode kernel's) against the
    reference, head by head, from the frequencies the config gives."""
    import mindspore as ms

    from engine.backends.cpu.decode_step import rope as cpu_decode_rope
    from engine.backends.cpu.prefill import rope_rows as cpu_prefill_rope
    from engine.backends.mindspore.llama_model import Attention, rope_tables
    from engine.config import ModelConfig, rope_inv_frequencies

    cfg = ModelConfig(hidden_size=64, num_layers=1, num_heads=4, vocab_size=10, theta=theta)
    positions = np.array([0, 1, 7, 300])
    x = np.random.default_rng(1).standard_normal((len(positions), 4, 16)).astype(np.float32)
    want = ref.rope(x, positions, theta)
    cos, sin = rope_tables(cfg, 301)
    got = Attention._rope(ms.Tensor(x), ms.Tensor(cos[positions][:, None, :]), ms.Tensor(sin[positions][:, None, :]))
    np.testing.assert_allclose(got.asnumpy(), want, rtol=0, atol=2e-5)
    angles = np.outer(positions, rope_inv_frequencies(cfg))
    half_cos, half_sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    rows = x.reshape(len(positions), -1).copy()
    cpu_prefill_rope(rows, 4, 16, half_cos, half_sin)
    np.testing.assert_allclose(rows.reshape(x.shape), want, rtol=0, atol=2e-5)
    for t in range(len(positions)):
        vec = x[t].reshape(-1).copy()
        cpu_decode_rope(vec, 4, 16, half_cos[t], half_sin[t])
        np.testing.assert_allclose(vec.reshape(4, 16), want[t], rtol=0, atol=2e-5)


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
    assert_close(ex.prefill(ids, 0), ref.forward(weights, spec.hp, ids)[-1], 1e-4)
    nxt = [7, 8]
    ex.decode(nxt[0], 600)
    assert_close(ex.decode(nxt[1], 601), ref.forward(weights, spec.hp, ids + nxt)[-1], 1e-4)
    ex.close()
