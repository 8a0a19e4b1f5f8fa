"""RoPE scaling from the yaml: LLaMA3.1's rule gives exactly Meta's frequencies and a model using them matches
the numpy reference run with those frequencies; ``linear`` divides them; anything else is refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from engine import ConfigError
from engine.config import load_config, rope_inv_frequencies
from fixtures import error_line, make_executor, run_cli

LLAMA31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}


def meta_apply_scaling(freqs, scale_factor=8, low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """Meta's llama3.1 ``apply_scaling`` (meta-llama/llama-models), loop for loop, with its constants as defaults."""
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    new_freqs = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            new_freqs.append(freq)
        elif wavelen > low_freq_wavelen:
            new_freqs.append(freq / scale_factor)
        else:
            assert low_freq_wavelen != high_freq_wavelen
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            new_freqs.append((1 - smooth) * freq / scale_factor + smooth * freq)
    return np.array(new_freqs)


def _yaml(tmp_path, name="scaled.yaml", spec=mf.LLAMA2_TINY, **overrides):
    return mf.write_yaml(spec, tmp_path / name, **overrides)


@pytest.mark.parametrize("key", ["rope_type", "type"])  # HF spells it rope_type, older MindFormers type
def test_llama3_scaling_gives_metas_frequencies(tmp_path, key):
    scaling = {key: "llama3", **{k: v for k, v in LLAMA31.items() if k != "rope_type"}}
    cfg = load_config(_yaml(tmp_path, hidden_size=4096, num_heads=32, n_kv_heads=8, theta=500000.0,
                            rope_scaling=scaling))  # LLaMA3.1-8B's shape: head size 128
    base = ref.inverse_frequencies(128, 500000.0)
    want = meta_apply_scaling(base)
    got = rope_inv_frequencies(cfg)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    kept, divided = np.isclose(want, base, rtol=1e-12), np.isclose(want, base / 8, rtol=1e-12)
    assert kept.any() and divided.any() and (~kept & ~divided).any()  # all three bands are exercised


def test_mindformers_extend_method_spelling_gives_the_same_frequencies(tmp_path):
    """MindFormers' LLaMA3.1 yamls say ``extend_method: LLAMA3`` with a ``scaling_factor`` mapping."""
    shape = dict(hidden_size=4096, num_heads=32, n_kv_heads=8, theta=500000.0)
    factor = {k: v for k, v in LLAMA31.items() if k != "rope_type"}
    cfg = load_config(_yaml(tmp_path, extend_method="LLAMA3", scaling_factor=factor, **shape))
    np.testing.assert_allclose(rope_inv_frequencies(cfg), meta_apply_scaling(ref.inverse_frequencies(128, 500000.0)),
                               rtol=1e-12, atol=0)
    cfg = load_config(_yaml(tmp_path, "pi.yaml", extend_method="PI", scaling_factor=2.0))
    np.testing.assert_allclose(rope_inv_frequencies(cfg), ref.inverse_frequencies(16, 10000.0) / 2, rtol=1e-12)
    assert load_config(_yaml(tmp_path, "none.yaml", extend_method="None")).rope_scaling is None
    with pytest.raises(ConfigError, match="extend_method 'NTK' is not supported"):
        load_config(_yaml(tmp_path, "ntk.yaml", extend_method="NTK", scaling_factor=2.0))


def test_linear_scaling_divides_the_frequencies(tmp_path):
    cfg = load_config(_yaml(tmp_path, rope_scaling={"type": "linear", "factor": 4.0}))
    np.testing.assert_allclose(rope_inv_frequencies(cfg), ref.inverse_frequencies(16, 10000.0) / 4, rtol=1e-12)


@pytest.mark.parametrize("kind", ["yarn", "dynamic", "longrope"])
def test_other_scaling_kinds_are_refused_by_name(tmp_path, llama2_tiny, kind):
    yml = _yaml(tmp_path, rope_scaling={"type": kind, "factor": 4.0})
    with pytest.raises(ConfigError, match=f"rope_scaling type '{kind}' is not supported"):
        load_config(yml)
    if kind == "yarn":
        line = error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", llama2_tiny[0], "--prompt-ids", "1,2"))
        assert "yarn" in line and yml.name in line


def test_model_with_llama3_scaling_matches_the_reference_with_metas_frequencies(llama2_tiny, tmp_path):
    ckpt, _, weights, spec = llama2_tiny
    # a short original context, so that the tiny model's 8 frequencies fall in all three bands
    scaling = {**LLAMA31, "original_max_position_embeddings": 64}
    executor = make_executor("mindspore", ckpt, _yaml(tmp_path, rope_scaling=scaling))
    scaled = meta_apply_scaling(ref.inverse_frequencies(16, spec.theta), old_context_len=64)
    assert not np.allclose(scaled, ref.inverse_frequencies(16, spec.theta))
    ids = [int(i) for i in np.random.default_rng(7).integers(3, spec.vocab, 150)]
    try:
        got = executor.prefill(ids, 0)
    finally:
        executor.close()
    want = ref.forward(weights, {**spec.hp, "inv_freq": scaled}, ids)[-1]
    unscaled = ref.forward(weights, spec.hp, ids)[-1]
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-4 * scale
    assert np.abs(got - unscaled).max() > 100 * 1e-4 * scale  # the scaling matters at these positions
