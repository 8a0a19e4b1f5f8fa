"""The executors' KV rows: exported, imported and shifted, checked against the numpy reference.

A restored cache must continue exactly like the original; a shifted one moves keys by a rotation,
which is exact up to rounding in the first layer (its rows depend only on the token and its
position) and for a whole one-layer model. Deeper layers of a shifted cache still carry what the
dropped tokens contributed (as in llama.cpp's context shift): that is measured, not asserted equal.
"""

from __future__ import annotations

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from fixtures import make_executor

BACKENDS = ("cpu", "mindspore")


def _ids(spec, n, seed):
    return [int(i) for i in np.random.default_rng(seed).integers(3, min(spec.vocab, 32000), n)]


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.abs(a - b).max() / np.abs(b).max())


# fp16 caches: a moved key is rounded once more (about one fp16 step, 2^-10 of its size); float32: nothing
KEY_TOLERANCE = {"float16": 2e-3, "float32": 1e-5}


@pytest.fixture(scope="module")
def executors():
    """One executor per (model, backend) for this module; MindSpore's take seconds each to compile."""
    made = {}

    def get(model, backend):
        key = (model[3].name, backend)
        if key not in made:
            made[key] = make_executor(backend, model[0], model[1])
        return made[key]
    yield get
    for ex in made.values():
        ex.close()


@pytest.fixture(scope="module", params=["llama2_tiny", "llama3_chunked"])
def model(request):
    return request.getfixturevalue(request.param)


_REFERENCE: dict[str, np.ndarray] = {}  # the numpy reference is slow on the 2.1M-token vocabulary: once per model


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_exported_and_imported_continue_like_the_original(model, backend, executors):
    ckpt, yml, weights, spec = model
    ex = executors(model, backend)
    first, other = _ids(spec, 40, 1), _ids(spec, 50, 2)
    ex.prefill(first, 0)
    keys, values = ex.export_kv(0, len(first))
    assert keys.shape == (spec.layers, spec.kv_heads, len(first), spec.dim // spec.heads)
    assert keys.dtype == np.dtype(ex.kv_element_type)
    ex.prefill(other, 0)                           # overwrites every position the first prompt used
    ex.import_kv(0, keys, values)
    logits = ex.decode(7, len(first))
    if spec.name not in _REFERENCE:
        _REFERENCE[spec.name] = ref.forward(weights, spec.hp, first + [7])[-1]
    assert _relative(logits, _REFERENCE[spec.name]) < 2e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shift_moves_first_layer_keys_like_a_fresh_prefill(model, backend, executors):
    """System 12 tokens, 40 dropped, 60 kept: the kept rows move back 40 positions."""
    spec = model[3]
    ex = executors(model, backend)
    system, dropped, kept = _ids(spec, 12, 3), _ids(spec, 40, 4), _ids(spec, 60, 5)
    ex.prefill(system + dropped + kept, 0)
    ex.shift_kv(len(system) + len(dropped), len(system), len(kept))
    shifted_k, shifted_v = ex.export_kv(len(system), len(system) + len(kept))
    ex.prefill(system + kept, 0)
    fresh_k, fresh_v = ex.export_kv(len(system), len(system) + len(kept))
    tolerance = KEY_TOLERANCE[ex.kv_element_type]
    assert _relative(shifted_k[0], fresh_k[0]) < tolerance
    assert _relative(shifted_v[0], fresh_v[0]) < 1e-4   # values carry no position
    # the deeper layer saw the dropped tokens: visibly different, which is the approximation
    assert _relative(shifted_k[1], fresh_k[1]) > 10 * tolerance


@pytest.mark.parametrize("spec", [mf.ONE_LAYER_MHA, mf.ONE_LAYER_GQA], ids=["mha-fp16", "gqa-bf16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_tokens_after_a_shift_are_the_references_on_one_layer_models(spec, backend):
    """With one layer the cache depends on token and position only: a shifted cache must answer exactly
    like the numpy reference given just the kept tokens."""
    ckpt, yml, weights = mf.cached_model(spec)
    ex = make_executor(backend, ckpt, yml)
    try:
        system, dropped, kept, question = _ids(spec, 10, 6), _ids(spec, 30, 7), _ids(spec, 50, 8), _ids(spec, 6, 9)
        ex.prefill(system + dropped + kept, 0)
        ex.shift_kv(len(system) + len(dropped), len(system), len(kept))
        pos = len(system) + len(kept)
        logits = ex.prefill(question, pos)
        pos += len(question)
        tokens = []
        for _ in range(8):
            tokens.append(int(np.argmax(logits)))
            logits = ex.decode(tokens[-1], pos)
            pos += 1
        assert tokens == ref.greedy(weights, spec.hp, system + kept + question, 8)
    finally:
        ex.close()


def test_moves_in_both_directions_and_overlapping_ranges_are_exact_in_float32():
    from engine.backends.kv_rows import rotation, rotate_keys, shift_rows

    rng = np.random.default_rng(0)
    inv_freq = 1.0 / 10000 ** (np.arange(0, 8, 2) / 8)
    keys = rng.standard_normal((2, 3, 1200, 8)).astype(np.float32)
    values = rng.standard_normal((2, 3, 1200, 8)).astype(np.float32)
    original_k, original_v = keys.copy(), values.copy()
    shift_rows(keys, values, 600, 100, 600, inv_freq)           # left, overlapping, more than one chunk
    cos, sin = rotation(inv_freq, -500)
    np.testing.assert_allclose(keys[..., 100:700, :], rotate_keys(original_k[..., 600:, :], cos, sin), atol=1e-6)
    np.testing.assert_array_equal(values[..., 100:700, :], original_v[..., 600:, :])
    shift_rows(keys, values, 100, 600, 600, inv_freq)           # and back to the right
    np.testing.assert_allclose(keys[..., 600:, :], original_k[..., 600:, :], atol=1e-5)
    np.testing.assert_array_equal(values[..., 600:, :], original_v[..., 600:, :])
