"""The cpu backend's packed-block kernels: llama.cpp's block rules, every CPU variant, batch invariance, GGUF blocks.

References are written here from llama.cpp's rules (Q8_0, Q4_0, Q4_1 per block
of 32, fp16 scales; Q4_K's search for each block's scale and minimum and its
6-bit rounding under one fp16 pair per 256 weights) and the ``gguf`` package's
own dequantizer; the kernels share no code with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures import ROOT
from test_cpu_executor import _fp16, _inverse, eight_bit_inputs, q4_1_reference, q4_k_reference, q8_0_reference


def q4_0_reference(w: np.ndarray) -> np.ndarray:
    """llama.cpp's Q4_0: scale = the block's largest-magnitude weight / -8, n = min(15, floor(w / d + 8.5))."""
    rows, k = w.shape
    blocks = w.reshape(rows, k // 32, 32).astype(np.float32)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1)[..., None], axis=-1)
    scale = extreme / np.float32(-8.0)
    n = np.minimum(15, np.floor(blocks * _inverse(scale) + np.float32(8.5)))
    return ((n - 8) * _fp16(scale)).reshape(rows, k).astype(np.float32)


RULES = {"Q8": q8_0_reference, "Q4_0": q4_0_reference, "Q4_1": q4_1_reference, "Q4_K": q4_k_reference}


def sixteen_bit_inputs(rows: np.ndarray) -> np.ndarray:
    """Rows in 16-bit blocks of 32: scale = max|x| / 32767, values rounded half away from zero."""
    blocks = rows.reshape(rows.shape[0], -1, 32).astype(np.float32)
    scale = (np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(32767.0)).astype(np.float32)
    scaled = blocks * _inverse(scale)
    return (np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5)) * scale).reshape(rows.shape)

# Run in a child process so a forced kernel variant (LLAMA_DESK_CPU_KERNELS) compiles from scratch.
_CHILD = r"""
import json, sys
import numpy as np
from engine.backends.cpu import dot_quant
from engine.backends.cpu.llvm_ir import ISA
from engine.backends.cpu.matmul import matmul
from engine.backends.cpu.quant_formats import pack_rows, packed_shape, unpack_rows
rng = np.random.default_rng(3)
n, k, t = 70, 320, 11
w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
x = rng.standard_normal((t, k)).astype(np.float32)
x[2, 5] = 40.0
out = {"isa": ISA}
for name in ("Q8", "Q4_0", "Q4_1", "Q4_K"):
    fmt = getattr(dot_quant, name)
    packed = np.zeros(packed_shape(fmt, n, k), np.uint8)
    pack_rows(fmt, w.view(np.uint16), packed)
    values = np.zeros((n, k), np.float32)
    unpack_rows(fmt, packed, 0, n, k, values)
    y = np.zeros((t, n), np.float32)
    act = (np.zeros((t, k), np.int8), np.zeros((t, k // 32), np.float32), np.zeros((t, k // 32), np.int32))
    meta = np.array([fmt, n, k], np.int64)
    matmul(packed, meta, x, act, y)
    single = [np.zeros((1, n), np.float32) for _ in range(t)]
    for i in range(t):
        one = tuple(a[:1].copy() for a in act)
        matmul(packed, meta, x[i:i + 1], one, single[i])
    act16 = (np.zeros((t, k), np.int16), act[1].copy(), act[2].copy())
    y16 = np.zeros((t, n), np.float32)
    matmul(packed, meta, x, act16, y16)
    single16 = [np.zeros((1, n), np.float32) for _ in range(t)]
    for i in range(t):
        matmul(packed, meta, x[i:i + 1], tuple(a[:1].copy() for a in act16), single16[i])
    out[name] = {"values": values.tolist(), "products": y.tolist(),
                 "alone": np.concatenate(single).tolist(), "products16": y16.tolist(),
                 "alone16": np.concatenate(single16).tolist()}
print(json.dumps(out))
"""


def _run_variant(variant: str | None, home) -> dict:
    env = dict(os.environ, LLAMA_DESK_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("LLAMA_DESK_CPU_KERNELS", None)
    if variant:
        env["LLAMA_DESK_CPU_KERNELS"] = variant
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host_results(tmp_path_factory):
    return _run_variant(None, tmp_path_factory.mktemp("home"))


def test_blocks_follow_llama_cpp_rules_and_products_are_integer_exact(host_results):
    rng = np.random.default_rng(3)
    n, k, t = 70, 320, 11
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16).astype(np.float32)
    x = rng.standard_normal((t, k)).astype(np.float32)
    x[2, 5] = 40.0
    for name, rule in RULES.items():
        values = np.asarray(host_results[name]["values"], np.float32)
        assert np.array_equal(values, rule(w)), name      # the same integers and fp16 scales as llama.cpp's
        want = eight_bit_inputs(x).astype(np.float64) @ values.T.astype(np.float64)
        got = np.asarray(host_results[name]["products"])
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), name
        # 16-bit activation blocks (the built-in model's): the same integers, finer inputs
        want16 = sixteen_bit_inputs(x).astype(np.float64) @ values.T.astype(np.float64)
        got16 = np.asarray(host_results[name]["products16"])
        assert np.abs(got16 - want16).max() <= 1e-5 * np.abs(want16).max(), name
        assert np.abs(got16 - want16).max() < np.abs(got - want16).max(), name


def test_a_token_gets_the_same_bits_alone_and_in_a_batch(host_results):
    """Batch invariance: tiles of several tokens compute each row exactly as the one-token kernel does."""
    for name in RULES:
        assert host_results[name]["products"] == host_results[name]["alone"], name
        # 16-bit activations (the built-in model's): its tiles of 8, 4, 2 and 1 tokens too
        assert host_results[name]["products16"] == host_results[name]["alone16"], name


@pytest.mark.parametrize("variant", ["avxvnni", "avx2", "generic"])
def test_every_cpu_variant_gives_the_same_bits(variant, host_results, tmp_path):
    """The narrower instruction sets (AVX-VNNI, AVX2, plain vectors) a user's PC may have: same results."""
    got = _run_variant(variant, tmp_path)
    order = ("avx512", "avxvnni", "avx2", "generic")
    if order.index(got["isa"]) < order.index(variant):
        pytest.skip(f"this CPU cannot run the {variant} kernels")
    for name in RULES:
        assert got[name]["products"] == host_results[name]["products"], (variant, name)
        assert got[name]["products16"] == host_results[name]["products16"], (variant, name)


def test_builtin_int4_takes_the_gguf_blocks_as_they_are():
    """The built-in model's 4-bit matrices hold exactly the values of its GGUF file (the gguf package's
    dequantizer), with no second rounding; its 8-bit vocabulary matrix likewise."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from assets import require_asset
    from engine.backends.cpu.gguf_blocks import gguf_block_weights
    from engine.backends.cpu.quant_formats import unpack_rows
    from engine.builtin_model import unpermute_rope

    path = require_asset("smollm2-gguf")
    weights = gguf_block_weights(path, heads=9, kv_heads=3)
    reader = GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    for gguf_name, ours, heads in (("blk.3.attn_q.weight", "model.layers.3.attention.wq.weight", 9),
                                   ("blk.3.attn_k.weight", "model.layers.3.attention.wk.weight", 3),
                                   ("blk.7.ffn_down.weight", "model.layers.7.feed_forward.w2.weight", None),
                                   ("token_embd.weight", "model.tok_embeddings.embedding_weight", None)):
        t = tensors[gguf_name]
        want = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
        if heads:
            want = unpermute_rope(want, heads)
        weight = weights[ours]
        rows, k = weight.shape
        got = np.zeros((rows, k), np.float32)
        _, data, meta = weight.parts[0]
        unpack_rows(int(meta[0]), data, 0, rows, k, got)
        assert np.array_equal(got, want), gguf_name
    assert weights["model.layers.0.attention.wq.weight"].format == "q4_1"
    assert weights["model.tok_embeddings.embedding_weight"].format == "int8"


def test_a_nan_weight_stops_quantized_loading(tmp_path):
    """Quantizing would hide a NaN in a block's scale; loading refuses the tensor by name instead."""
    import mindspore as ms

    from engine import CheckpointError, ExecutorOptions, ModelSource, load_engine

    import model_factory as mf

    ckpt, yml, weights = mf.cached_model(mf.LLAMA2_TINY)
    broken = dict(weights)
    name = "model.layers.1.attention.wv.weight"
    broken[name] = weights[name].copy()
    broken[name][3, 9] = np.nan
    path = tmp_path / "nan.ckpt"
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v.astype(np.float16) if v.ndim == 2 else v)}
                        for n, v in broken.items()], str(path))
    for fmt in ("int8", "int4"):
        with pytest.raises(CheckpointError, match=r"layers\.1\.attention\.wv.*NaN or infinite"):
            load_engine(ModelSource(version=2, config=yml, checkpoint=path, need_tokenizer=False),
                        ExecutorOptions(backend="cpu", weight_format=fmt))
