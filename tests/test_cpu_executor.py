"""The cpu executor's own promises: zero-copy stored weights, exact 8-/4-bit blocks, cancelling, closing.

The 8-bit and 4-bit references are written here from llama.cpp's Q8_0 and
Q4_1 rules (per block of 32: scale = max|w| / 127, values rounded half away
from zero; or scale = (max - min) / 15 and minimum; scales stored in fp16) and
run through the independent numpy forward pass, with every matrix product's
input rounded to 8-bit blocks the same way, so the kernels are checked
against arithmetic they share nothing with.
"""

from __future__ import annotations

import mmap
import threading
from dataclasses import replace

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from fixtures import StopAfterChecks, assert_close, greedy_ids, make_executor

from engine.backends.executor import PrefillCancelled


def _fp16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def _inverse(d: np.ndarray) -> np.ndarray:
    return np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, 1), 0).astype(np.float32)


def q8_0_reference(w: np.ndarray, scale_type=_fp16) -> np.ndarray:
    """float32 values an 8-bit (Q8_0) copy of ``w`` [rows, k] stands for."""
    rows, k = w.shape
    blocks = w.reshape(rows, k // 32, 32).astype(np.float32)
    scale = (np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127.0)).astype(np.float32)
    scaled = blocks * _inverse(scale)
    q = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return (q * scale_type(scale)).reshape(rows, k).astype(np.float32)


def q4_1_reference(w: np.ndarray) -> np.ndarray:
    """float32 values a 4-bit (Q4_1: scale and minimum) copy of ``w`` stands for."""
    rows, k = w.shape
    blocks = w.reshape(rows, k // 32, 32).astype(np.float32)
    lo, hi = blocks.min(axis=-1, keepdims=True), blocks.max(axis=-1, keepdims=True)
    scale = (hi - lo) / np.float32(15.0)
    n = np.minimum(15, np.floor((blocks - lo) * _inverse(scale) + np.float32(0.5)))
    return (n * _fp16(scale) + _fp16(lo)).reshape(rows, k).astype(np.float32)


def _grid_sums(x: np.ndarray, w: np.ndarray, inv: np.ndarray, lo: np.ndarray):
    """Sums of w n, w n^2, w n x over each block (in order) for the grid n = clip(round(inv (x - lo)), 0, 15)."""
    n = np.clip(np.rint(inv[:, None] * (x - lo[:, None])), 0, 15).astype(np.float32)
    sum_l, sum_l2, sum_xl = np.zeros(len(x), np.float32), np.zeros(len(x), np.float32), np.zeros(len(x), np.float32)
    for i in range(32):
        sum_l += w[:, i] * n[:, i]
        sum_l2 += w[:, i] * n[:, i] * n[:, i]
        sum_xl += w[:, i] * n[:, i] * x[:, i]
    return sum_l, sum_l2, sum_xl


def _fit(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's make_qkx2_quants(32, 15, x, w, rmin -1, rdelta 0.1, nstep 20) for every block (row of x) at
    once: (scale, minimum <= 0). Each block's sums run over its 32 values in order, as llama.cpp's do; each
    trial grid starts from the best minimum found so far, as llama.cpp's does. A grid's weighted squared
    error is computed from its sums: sum w (s n + m - x)^2 = s^2 A + 2 s m B - 2 s C + m^2 W - 2 m X + Q."""
    f = np.float32
    lo, hi = np.minimum(x.min(axis=1), f(0)), x.max(axis=1)
    flat = hi == lo
    span = np.where(flat, f(1), hi - lo)
    sum_w, sum_x, sum_x2 = np.zeros_like(lo), np.zeros_like(lo), np.zeros_like(lo)
    for i in range(32):
        sum_w += w[:, i]
        sum_x += w[:, i] * x[:, i]
        sum_x2 += w[:, i] * x[:, i] * x[:, i]

    def error(s, m, sum_l, sum_l2, sum_xl):
        return (s * s * sum_l2 + f(2) * s * m * sum_l - f(2) * s * sum_xl + m * m * sum_w - f(2) * m * sum_x
                + sum_x2)

    inv = f(15) / span
    scale = np.where(flat, f(0), f(1) / inv)
    best = error(scale, lo, *_grid_sums(x, w, np.where(flat, f(0), inv), lo))
    with np.errstate(divide="ignore", invalid="ignore"):
        for step in range(21):
            inv = (f(-1) + f(0.1) * f(step) + f(15)) / np.where(flat, f(1), hi - lo)   # lo: the best fit's
            sum_l, sum_l2, sum_xl = _grid_sums(x, w, inv, lo)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            this_scale = np.where(this_min > 0, sum_xl / sum_l2, this_scale)
            this_min = np.where(this_min > 0, f(0), this_min)
            err = error(this_scale, this_min, sum_l, sum_l2, sum_xl)
            better = ~flat & (det > 0) & (err < best)
            best, scale, lo = np.where(better, err, best), np.where(better, this_scale, scale), \
                np.where(better, this_min, lo)
    return scale.astype(np.float32), lo.astype(np.float32)


def q4_k_reference(w: np.ndarray) -> np.ndarray:
    """llama.cpp's Q4_K (quantize_row_q4_K_ref): per block of 32 a searched scale and minimum, weighted by
    |w| + the block's rms; per 256 (a shorter last group here) fp16 D = largest scale / 63, M = largest
    minimum / 63 and 6-bit s, m; then n = clip(round((w + M m) / (D s)), 0, 15); value (D s) n - M m."""
    f = np.float32
    rows, k = w.shape
    blocks = w.reshape(rows * (k // 32), 32).astype(np.float32)
    rms = np.sqrt(np.cumsum(blocks * blocks, axis=1)[:, -1] / f(32)).astype(np.float32)
    scale, lo = _fit(blocks, rms[:, None] + np.abs(blocks))
    scale, minimum = scale.reshape(rows, k // 32), (-lo).reshape(rows, k // 32)
    out = np.zeros((rows, k // 32, 32), np.float32)
    for first in range(0, k // 32, 8):
        part = slice(first, min(k // 32, first + 8))
        top_s, top_m = scale[:, part].max(axis=1, keepdims=True), minimum[:, part].max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            s = np.minimum(63, np.rint(np.where(top_s > 0, f(63) / top_s, f(0)) * scale[:, part]))
            m = np.minimum(63, np.rint(np.where(top_m > 0, f(63) / top_m, f(0)) * minimum[:, part]))
        d, dm = (_fp16(top_s / f(63)) * s).astype(np.float32), (_fp16(top_m / f(63)) * m).astype(np.float32)
        x = w.reshape(rows, k // 32, 32)[:, part].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            n = np.clip(np.rint((x + dm[..., None]) / d[..., None]), 0, 15)
        out[:, part] = np.where(d[..., None] != 0, d[..., None] * n, 0) - dm[..., None]
    return out.reshape(rows, k)


def eight_bit_inputs(rows: np.ndarray) -> np.ndarray:
    """What a product with quantized weights sees of its input: each row in 8-bit blocks (Q8_0, float32 scale)."""
    if rows.shape[-1] % 32:
        return rows  # such a matrix was not quantized
    return q8_0_reference(rows.reshape(-1, rows.shape[-1]), scale_type=lambda d: d).reshape(rows.shape)


def quantized_weights(weights: dict, tied: bool = False, rule=q8_0_reference) -> dict:
    """What the executor computes with: matrices with k % 32 == 0 quantized by ``rule`` (the vocabulary
    projection by Q8_0 whatever the rule), except an untied embedding, read as stored."""
    out = {}
    for name, w in weights.items():
        keep = w.ndim == 1 or w.shape[1] % 32 or (name.endswith("embedding_weight") and not tied)
        head = name == "lm_head.weight" or (tied and name.endswith("embedding_weight"))
        out[name] = w if keep else (q8_0_reference(w) if head else rule(w))
    return out


@pytest.fixture(scope="module")
def llama3_int8(llama3_chunked):
    ex = make_executor("cpu", llama3_chunked[0], llama3_chunked[1], weight_format="int8", kv_cache="float32")
    yield ex
    ex.close()


def int4_reference(w: np.ndarray) -> np.ndarray:
    """The rule of the 4-bit layout ``--quantize int4`` uses (``quantize.INT4_LAYOUT``)."""
    from engine.backends.cpu.quantize import INT4_LAYOUT
    return {"q4_1": q4_1_reference, "q4_k": q4_k_reference}[INT4_LAYOUT](w)


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
@pytest.mark.parametrize("fmt, rule", [("int8", q8_0_reference), ("int4", int4_reference)])
def test_quantized_weights_match_a_numpy_reference(model, fmt, rule, request):
    """Prefill and greedy decoding against the reference with the same blocks and 8-bit inputs."""
    ckpt, yml, weights, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt, kv_cache="float32")
    want = quantized_weights(weights, rule=rule)
    prompt = [spec.bos] + list(np.random.default_rng(5).integers(3, spec.vocab, 40))
    # float64: 8-bit input rounding turns a float32 reference's own summation error into a whole step at a
    # rounding boundary (seen: 2.4e-3 between the float32 and float64 references on int4's last prompt token)
    want_logits = ref.forward(want, spec.hp, prompt, dtype=np.float64, inputs=eight_bit_inputs)[-1]
    assert_close(ex.prefill(prompt, 0), want_logits, 1e-4)
    assert greedy_ids(ex, prompt, 10) == ref.greedy(want, spec.hp, prompt, 10, inputs=eight_bit_inputs)
    ex.close()


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_a_batch_of_tokens_gets_the_logits_each_gets_alone(model, fmt, request):
    """decode_batch: one pass over the weights for several tokens, each row bit-identical to decoding it
    alone at its position (what checking drafted tokens and serving several streams rely on)."""
    ckpt, yml, weights, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt)
    prompt = [spec.bos] + list(np.random.default_rng(8).integers(3, spec.vocab, 20))
    tokens = [5, 17, 99, 1000, 3, 44, 12]
    ex.prefill(prompt, 0)
    together = ex.decode_batch(tokens, len(prompt))
    ex.prefill(prompt, 0)
    alone = np.stack([ex.decode(t, len(prompt) + i) for i, t in enumerate(tokens)])
    assert np.array_equal(together, alone)
    if fmt == "stored":
        assert_close(together[-1], ref.forward(weights, spec.hp, prompt + tokens)[-1], 1e-3)
    ex.close()


def test_int8_stays_close_to_the_stored_weights(llama3_chunked, llama3_int8):
    """Stated tolerance for 8-bit blocks on these random test models: logits within 3% of max |logit|."""
    ckpt, yml, weights, spec = llama3_chunked
    prompt = [spec.bos, 5, 17, 99_999, 2_000_000, 42]
    assert_close(llama3_int8.prefill(prompt, 0), ref.forward(weights, spec.hp, prompt)[-1], 0.03)


def _root(data: np.ndarray):
    base = data
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_stored_weights_are_views_of_the_mapped_file(llama3_chunked, monkeypatch):
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "map")
    ex = make_executor("cpu", llama3_chunked[0], llama3_chunked[1])
    layer = ex.layers[0]
    for weight in (layer.wq, layer.w2, ex.lm_head):
        for _, data, _ in weight.parts:
            assert isinstance(_root(data), mmap.mmap), f"{weight.format} weight was copied"
    assert len(ex.lm_head.parts) >= 2  # MindSpore split it into records: used as is, rows in place
    assert layer.wq.data.dtype == np.int16 and ex.weight_format == "bfloat16"  # int16 carries bf16 bits
    source = ex.source
    del layer, weight, data  # our own references to the views
    ex.close()
    assert source.closed


def test_copied_stored_weights_own_their_memory_and_give_the_maps_logits(llama3_chunked, monkeypatch):
    """Where large arrays get 2 MB pages, matrices are read into copies (``copies_pay``): same bits, same answers,
    the map's pages never made resident by them; the rarely read embedding rows stay mapped."""
    ckpt, yml, _, spec = llama3_chunked
    prompt = [spec.bos, 5, 17, 99_999, 2_000_000, 42]
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "map")
    mapped = make_executor("cpu", ckpt, yml)
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "copy")
    copied = make_executor("cpu", ckpt, yml)
    for short in ("wq", "wk", "w1", "w2"):
        a, b = getattr(mapped.layers[1], short), getattr(copied.layers[1], short)
        root = _root(b.data)
        assert len(b.parts) == 1 and isinstance(root, np.ndarray) and root.flags.owndata
        assert b.data.dtype == np.int16 and np.array_equal(np.concatenate([d for _, d, _ in a.parts]), b.data)
    assert not isinstance(_root(copied.lm_head.data), mmap.mmap)
    assert np.array_equal(mapped.prefill(prompt, 0), copied.prefill(prompt, 0))   # the map's: see the tests above
    assert np.array_equal(mapped.decode(7, len(prompt)), copied.decode(7, len(prompt)))
    del a, b
    mapped.close()
    copied.close()


# fp16, MHA, every matrix packable (k a multiple of 16, rows of 4): the packed kernels' fp16 widening
PACKABLE_FP16 = mf.TinySpec("packable_mha_fp16", dim=64, layers=2, heads=4, kv_heads=4, vocab=1000, ffn=176,
                            theta=10000.0, dtype="float16")


@pytest.mark.parametrize("model", ["llama3_chunked", "packable_fp16"])
def test_packed_layer_matrices_give_the_numpy_references_tokens_and_the_maps_logits_bit_for_bit(model, llama3_chunked,
                                                                                                 monkeypatch):
    """Packed stored matrices (``dot_wide.pack_rows``: 4 rows side by side) hold the same values and the kernels
    take each row's products in the same order: prefill, decode and batched steps give the map's very logits,
    and greedy decoding gives the independent numpy forward pass's tokens."""
    if model == "llama3_chunked":
        ckpt, yml, weights, spec = llama3_chunked
    else:
        spec = PACKABLE_FP16
        ckpt, yml, weights = mf.cached_model(spec)
    prompt = [spec.bos, 5, 17, 99, 200, 42]
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "map")
    mapped = make_executor("cpu", ckpt, yml)
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "packed")
    packed = make_executor("cpu", ckpt, yml)
    try:
        for short in ("wq", "wk", "wo", "w1", "w2"):
            w = getattr(packed.layers[0], short)
            assert w.data.ndim == 3 and w.data.shape[0] * 4 == w.shape[0], short
        assert packed.lm_head.data.ndim == 2   # the vocabulary matrix (also the tied embedding) stays in rows
        assert np.array_equal(mapped.prefill(prompt, 0), packed.prefill(prompt, 0))
        assert np.array_equal(mapped.decode(7, len(prompt)), packed.decode(7, len(prompt)))
        assert np.array_equal(mapped.decode_batch([9, 11, 13], len(prompt) + 1),
                              packed.decode_batch([9, 11, 13], len(prompt) + 1))
        expected = ref.greedy(weights, spec.hp, prompt, 6)
        assert greedy_ids(packed, prompt, 6) == expected
    finally:
        mapped.close()
        packed.close()


def test_a_model_with_an_unpackable_matrix_keeps_every_layer_in_rows(llama2_tiny, monkeypatch):
    """ffn 172 is no multiple of 16: the step takes one array type per matrix kind, so no layer is packed."""
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "packed")
    ex = make_executor("cpu", llama2_tiny[0], llama2_tiny[1])
    try:
        assert all(getattr(layer, s).data.ndim == 2 for layer in ex.layers for s in ("wq", "w1", "w2"))
    finally:
        ex.close()


def test_by_default_only_rows_of_a_page_or_more_are_packed(llama3_chunked, monkeypatch):
    """Packing pays where a tile's rows are streams a page apart; these 128-weight rows are not packed unless
    asked for, and the large-page default packs a LLaMA-sized layer (rows of 4,096 bf16 weights)."""
    from engine.backends.cpu import weights
    from engine.weights.validation import open_weights

    source = open_weights(llama3_chunked[0])
    try:
        names = [n for n in source.tensors if n.endswith(("wq.weight", "w2.weight"))]
        monkeypatch.delenv("LLAMA_DESK_STORED_WEIGHTS", raising=False)
        monkeypatch.setattr(weights, "copies_pay", lambda: True)
        assert weights.stored_layout() == "packed" and not weights.packs_layers(source, names)
        monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "packed")
        assert weights.packs_layers(source, names)
        monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "copy")
        assert not weights.packs_layers(source, names)
    finally:
        source.close()
    monkeypatch.delenv("LLAMA_DESK_STORED_WEIGHTS")

    class Info:
        shape, dtype = (14336, 4096), "bfloat16"

    class Big:
        tensors = {"layer": Info()}
    assert weights.packs_layers(Big(), ["layer"])


def test_weights_stay_mapped_where_copies_would_not_get_large_pages(monkeypatch):
    from engine.backends.cpu import weights

    monkeypatch.delenv("LLAMA_DESK_STORED_WEIGHTS", raising=False)
    monkeypatch.setattr(weights.sys, "platform", "win32")
    assert weights.copies_pay() is False
    monkeypatch.setenv("LLAMA_DESK_STORED_WEIGHTS", "copy")
    assert weights.copies_pay() is True


def test_an_unknown_int4_layout_stops_with_the_variable_to_fix(llama3_chunked, monkeypatch):
    from engine.backends.cpu import quantize
    from engine.errors import ConfigError

    monkeypatch.setattr(quantize, "INT4_LAYOUT", "q5_0")   # as LLAMA_DESK_INT4_LAYOUT=q5_0 would set it
    with pytest.raises(ConfigError, match="LLAMA_DESK_INT4_LAYOUT='q5_0'.*q4_k, q4_1 or q4_0"):
        make_executor("cpu", llama3_chunked[0], llama3_chunked[1], weight_format="int4")


def test_int8_weights_hold_about_half_the_bytes(llama3_chunked, llama3_int8):
    stored = make_executor("cpu", llama3_chunked[0], llama3_chunked[1])
    for short in ("wq", "wk", "w1", "w2"):
        a, b = getattr(stored.layers[1], short), getattr(llama3_int8.layers[1], short)
        assert b.format == "int8" and b.nbytes == pytest.approx(a.nbytes * (1 + 2 / 32) / 2, rel=0.03)
    del a, b
    stored.close()


def test_cancelled_prefill_leaves_a_cache_the_next_prompt_can_trust(llama2_tiny, tmp_path):
    from engine.backends.cpu.cpu_executor import PREFILL_BLOCK

    ckpt, _, weights, spec = llama2_tiny
    yml = mf.write_yaml(spec, tmp_path / "long_context.yaml", seq_length=2 * PREFILL_BLOCK)  # room for two blocks
    ex = make_executor("cpu", ckpt, yml, kv_cache="float32")
    ids = list(np.random.default_rng(7).integers(3, spec.vocab, PREFILL_BLOCK + 188))
    cancel = threading.Event()
    cancel.set()
    assert computed_before_stop(ex, ids, cancel) == 0
    # the first block runs (one check per layer), then Stop arrives in the second block after its first layer
    # has written that block's keys and values: the first block stays valid, the second is computed again
    assert computed_before_stop(ex, ids, StopAfterChecks(spec.layers + 1)) == PREFILL_BLOCK
    assert_close(ex.prefill(ids[PREFILL_BLOCK:], PREFILL_BLOCK), ref.forward(weights, spec.hp, ids)[-1], 1e-4)
    source = ex.source
    ex.close()
    assert source.closed


def computed_before_stop(executor, ids, cancel) -> int:
    """How many prompt tokens a cancelled prefill says it computed (the exception is dropped here, so that no
    traceback keeps a view of the mapped file alive)."""
    try:
        executor.prefill(ids, 0, cancel=cancel)
    except PrefillCancelled as stop:
        return stop.computed
    raise AssertionError("the cancel event did not stop the prefill")


def test_one_thread_gives_the_same_tokens(llama2_tiny):
    ckpt, yml, weights, spec = llama2_tiny
    prompt = [spec.bos, 15, 300, 7, 999]
    one = make_executor("cpu", ckpt, yml, threads=1)
    assert greedy_ids(one, prompt, 12) == ref.greedy(weights, spec.hp, prompt, 12)
    one.close()


@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_steps_on_one_or_two_threads_give_bit_identical_logits(llama3_chunked, fmt):
    """The decode thread count changes with the machine's load (thread_tuner): no answer may change with it."""
    from engine.backends.cpu.thread_tuner import ThreadTuner

    ckpt, yml, weights, spec = llama3_chunked
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt)
    prompt = [spec.bos] + list(np.random.default_rng(3).integers(3, spec.vocab, 30))
    tokens = [7, 300, 12, 45, 999, 4]
    runs = []
    for threads in (1, 2):
        ex.tuner = ThreadTuner(threads, fixed=True)
        ex.prefill(prompt, 0)
        runs.append(np.stack([ex.decode(t, len(prompt) + i) for i, t in enumerate(tokens)] +
                             list(ex.decode_batch(tokens, len(prompt)))))
    assert np.array_equal(runs[0], runs[1])
    ex.close()


def test_close_releases_the_checkpoint_file(llama2_tiny):
    ex = make_executor("cpu", llama2_tiny[0], llama2_tiny[1])
    source = ex.source
    assert not source.closed
    ex.close()
    assert source.closed  # no view left behind: the file is not locked on Windows


def test_memory_estimate_suggests_int8_when_only_that_fits(llama3_chunked, monkeypatch):
    import engine.loader as loader
    from engine import EngineError, ModelSource, load_engine

    ckpt, yml, _, spec = llama3_chunked
    from engine.backends.cpu.cpu_executor import CpuExecutor
    from engine.backends.registry import ExecutorOptions
    from engine.config import load_config
    from engine.weights.validation import open_weights

    cfg = load_config(yml)
    with open_weights(ckpt) as source:
        options = ExecutorOptions(max_seq_len=256, device="CPU", weight_format="stored")
        stored = CpuExecutor.estimate_memory(cfg, source, options)
        small = CpuExecutor.estimate_memory(cfg, source, replace(options, weight_format="int8"))
    assert small.weights < 0.6 * stored.weights
    free = (stored.total + small.total) // 2
    monkeypatch.setattr(loader, "available_bytes", lambda: free)  # this machine, but fuller
    with pytest.raises(EngineError) as err:
        load_engine(ModelSource(version=3, config=yml, checkpoint=ckpt, need_tokenizer=False),
                    ExecutorOptions(backend="cpu"))
    assert err.value.suggested_format == "int8" and "8-bit (int8) weights it would need" in str(err.value)
    engine = load_engine(ModelSource(version=3, config=yml, checkpoint=ckpt, need_tokenizer=False),
                         ExecutorOptions(backend="cpu", weight_format="int8"))
    assert engine.info.weight_format == "int8" and engine.info.executor == "cpu"
    engine.close()


def test_int8_product_matches_float64_within_rounding():
    """The 8-bit kernel (integer products of 8-bit blocks) against float64, with an activation outlier."""
    from engine.backends.cpu.dot_quant import Q8
    from engine.backends.cpu.matvec import matvec
    from engine.backends.cpu.quant_formats import pack_rows, packed_shape

    rng = np.random.default_rng(0)
    n, k = 250, 1536   # not a whole number of row groups
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
    x = rng.standard_normal(k).astype(np.float32) * 3
    x[7] = 80.0  # activations have outliers; one must not spoil the other blocks
    packed = np.zeros(packed_shape(Q8, n, k), np.uint8)
    assert pack_rows(Q8, w.view(np.uint16), packed) == 0
    want = q8_0_reference(w.astype(np.float32)).astype(np.float64) @ eight_bit_inputs(x[None])[0].astype(np.float64)
    out = np.empty(n, np.float32)
    act = (np.empty((1, k), np.int8), np.empty((1, k // 32), np.float32), np.empty((1, k // 32), np.int32))
    matvec(packed, np.array([Q8, n, k], np.int64), x, act, out)
    assert np.abs(out - want).max() <= 1e-5 * np.abs(want).max()


def test_int8_and_int4_move_the_builtin_models_perplexity_by_less_than_one_percent(tmp_path):
    """On real weights (SmolLM2-135M) and a fixed English text: the README quotes these figures."""
    import sys

    from assets import require_asset
    from fixtures import ROOT

    require_asset("smollm2-gguf")
    sys.path.insert(0, str(ROOT / "bench"))
    from perplexity import TEXT, perplexity

    from engine import ExecutorOptions, ModelSource, load_engine

    text = TEXT.read_text(encoding="utf-8")
    results = {}
    for fmt in ("stored", "int8", "int4"):   # int4: its own Q4_1 file's blocks
        engine = load_engine(ModelSource(builtin=True), ExecutorOptions(backend="cpu", weight_format=fmt))
        results[fmt], scored = perplexity(engine, text)
        engine.close()
        assert scored > 300
    assert 10 < results["stored"] < 100  # a real model reading real text, not noise (vocabulary 49152)
    assert abs(results["int8"] / results["stored"] - 1) < 0.01
    assert abs(results["int4"] / results["stored"] - 1) < 0.01


def test_compiled_kernels_live_in_the_user_data_folder_only(llama2_tiny):
    """Never next to the sources (an installed program's folder may be read-only, and numba's in-tree
    cache goes stale when a helper in another file changes)."""
    from fixtures import ROOT

    from engine.paths import user_data_dir

    ex = make_executor("cpu", llama2_tiny[0], llama2_tiny[1], weight_format="int8")
    ex.decode(3, 0)
    ex.close()
    assert not list((ROOT / "engine" / "cpu").rglob("*.nbi"))
    assert list((user_data_dir() / "jit-cache").rglob("*.nbi"))
