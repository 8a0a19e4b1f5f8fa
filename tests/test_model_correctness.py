"""The MindSpore executor against the independent numpy forward pass (tests/reference_llama.py).

Tolerance: logits agree to 1e-4 of their largest magnitude (float32 with a
different summation order); greedy tokens must agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_llama as ref

RTOL = 1e-4


def _close(got, want):
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= RTOL * scale, np.abs(got - want).max() / scale


def _greedy_with_executor(ex, prompt, n):
    logits = ex.prefill(prompt, 0)
    out, pos = [], len(prompt)
    for _ in range(n):
        token = int(np.argmax(logits))
        out.append(token)
        logits = ex.decode(token, pos)
        pos += 1
    return out


def test_llama2_fp16_prefill_logits_match_reference(llama2_tiny, llama2_executor):
    ckpt, yml, weights, spec = llama2_tiny
    prompt = list(np.random.default_rng(1).integers(0, spec.vocab, 150))  # three prefill chunks
    want = ref.forward(weights, spec.hp, prompt)[-1]
    _close(llama2_executor.prefill(prompt, 0), want)


def test_llama2_fp16_greedy_matches_reference(llama2_tiny, llama2_executor):
    ckpt, yml, weights, spec = llama2_tiny
    prompt = [spec.bos, 15, 300, 7, 999]
    assert _greedy_with_executor(llama2_executor, prompt, 24) == ref.greedy(weights, spec.hp, prompt, 24)


def test_decode_logits_match_reference_at_every_step(llama2_tiny, llama2_executor):
    ckpt, yml, weights, spec = llama2_tiny
    ids = [spec.bos, 4, 8, 15, 16, 23, 42]
    llama2_executor.prefill(ids[:3], 0)
    for pos in range(3, len(ids)):
        got = llama2_executor.decode(ids[pos], pos)
        _close(got, ref.forward(weights, spec.hp, ids[:pos + 1])[-1])


def test_prefill_continues_from_a_cached_prefix(llama2_tiny, llama2_executor):
    """A second prefill starting at start_pos reuses the cache: same logits as from scratch."""
    ckpt, yml, weights, spec = llama2_tiny
    ids = list(np.random.default_rng(2).integers(0, spec.vocab, 90))
    llama2_executor.prefill(ids[:70], 0)
    got = llama2_executor.prefill(ids[70:], 70)
    _close(got, ref.forward(weights, spec.hp, ids)[-1])


def test_llama3_bf16_gqa_chunked_checkpoint_greedy_matches_reference(llama3_chunked, llama3_executor):
    ckpt, yml, weights, spec = llama3_chunked
    prompt = [spec.bos, 5, 17, 99_999, 2_000_000, 42]
    want_logits = ref.forward(weights, spec.hp, prompt)[-1]
    _close(llama3_executor.prefill(prompt, 0), want_logits)
    assert _greedy_with_executor(llama3_executor, prompt, 8) == ref.greedy(weights, spec.hp, prompt, 8)


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
def test_engine_rope_is_the_references_rotate_half(theta):
    """The engine's own tables and rotation (not just the whole model) against the reference, head by head."""
    import mindspore as ms

    from engine.config import ModelConfig
    from engine.ms_llama import Attention, rope_tables

    cfg = ModelConfig(hidden_size=64, num_layers=1, num_heads=4, vocab_size=10, theta=theta)
    positions = np.array([0, 1, 7, 300])
    x = np.random.default_rng(1).standard_normal((len(positions), 4, 16)).astype(np.float32)
    cos, sin = rope_tables(cfg, 301)
    got = Attention._rope(ms.Tensor(x), ms.Tensor(cos[positions][:, None, :]), ms.Tensor(sin[positions][:, None, :]))
    np.testing.assert_allclose(got.asnumpy(), ref.rope(x, positions, theta), rtol=0, atol=2e-5)


def test_attention_windows_grow_with_the_conversation(llama2_tiny, tmp_path):
    """Past 512 positions the executor switches to larger attention windows; results must not change."""
    import model_factory as mf
    from fixtures import make_executor

    ckpt, _, weights, spec = llama2_tiny
    yml = mf.write_yaml(spec, tmp_path / "long.yaml", seq_length=1100)
    ex = make_executor("mindspore", ckpt, yml)
    ids = list(np.random.default_rng(3).integers(3, spec.vocab, 600))
    assert [ex.window_for(n) for n in (1, 512, 513, 1025, 1100)] == [512, 512, 1024, 1164, 1164]
    _close(ex.prefill(ids, 0), ref.forward(weights, spec.hp, ids)[-1])
    nxt = [7, 8]
    ex.decode(nxt[0], 600)
    _close(ex.decode(nxt[1], 601), ref.forward(weights, spec.hp, ids + nxt)[-1])
