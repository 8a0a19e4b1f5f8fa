"""Small LLaMA checkpoints written by real MindSpore, cached once per machine.

Each model is random but seeded, with weights rounded to what the file stores
(float16, or bfloat16 by zeroing the low 16 bits of float32), so the numpy
reference sees exactly the values the engine reads. Nothing here imports
``engine``: the files are written the way MindFormers writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("LLAMA_DESK_TEST_CACHE", Path(__file__).parent / ".cache"))


@dataclass(frozen=True)
class TinySpec:
    name: str
    dim: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    ffn: int
    theta: float
    dtype: str           # "float16" or "bfloat16" (as stored)
    seq_length: int = 256
    eps: float = 1e-5
    bos: int = 1
    eos: int = 2

    @property
    def hp(self) -> dict:
        return dict(dim=self.dim, layers=self.layers, heads=self.heads, kv_heads=self.kv_heads,
                    eps=self.eps, theta=self.theta)


# LLaMA2-shaped: multi-head attention, float16.
LLAMA2_TINY = TinySpec("llama2_tiny_fp16", dim=64, layers=2, heads=4, kv_heads=4, vocab=32000, ffn=172,
                       theta=10000.0, dtype="float16")
# LLaMA3-shaped: grouped-query attention, bfloat16, and a vocabulary big enough that the
# embedding and lm_head exceed 512 MiB, so MindSpore splits them into several records.
LLAMA3_CHUNKED = TinySpec("llama3_gqa_bf16_chunked", dim=128, layers=2, heads=4, kv_heads=2, vocab=2_100_000,
                          ffn=384, theta=500000.0, dtype="bfloat16", bos=128000, eos=128001)


def tensor_shapes(spec: TinySpec) -> dict[str, tuple[int, ...]]:
    kv = spec.kv_heads * (spec.dim // spec.heads)
    shapes = {"model.tok_embeddings.embedding_weight": (spec.vocab, spec.dim)}
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        shapes.update({p + "attention.wq.weight": (spec.dim, spec.dim), p + "attention.wk.weight": (kv, spec.dim),
                       p + "attention.wv.weight": (kv, spec.dim), p + "attention.wo.weight": (spec.dim, spec.dim),
                       p + "feed_forward.w1.weight": (spec.ffn, spec.dim),
                       p + "feed_forward.w2.weight": (spec.dim, spec.ffn),
                       p + "feed_forward.w3.weight": (spec.ffn, spec.dim),
                       p + "attention_norm.weight": (spec.dim,), p + "ffn_norm.weight": (spec.dim,)})
    shapes["model.norm_out.weight"] = (spec.dim,)
    shapes["lm_head.weight"] = (spec.vocab, spec.dim)
    return shapes


def _round_to_bf16(a: np.ndarray) -> np.ndarray:
    bits = a.astype(np.float32).view(np.uint32)
    bits = (bits + 0x8000) & 0xFFFF0000  # round half up on the dropped bits, then truncate
    return bits.view(np.float32)


def make_weights(spec: TinySpec, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 arrays holding exactly the values stored (norms stay float32, as in MindFormers)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in tensor_shapes(spec).items():
        if len(shape) == 1:
            weights[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            continue
        scale = 1.0 if "embedding" in name or "lm_head" in name else 1.0 / np.sqrt(shape[1])
        a = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
        weights[name] = a.astype(np.float16).astype(np.float32) if spec.dtype == "float16" else _round_to_bf16(a)
    return weights


def write_ckpt(spec: TinySpec, weights: dict[str, np.ndarray], path: Path, **save_options) -> None:
    """``save_options`` go to ``mindspore.save_checkpoint`` (append_dict, crc_check, enc_key...)."""
    import mindspore as ms
    items = []
    for name, a in weights.items():
        if a.ndim == 1:
            tensor = ms.Tensor(a)
        elif spec.dtype == "float16":
            tensor = ms.Tensor(a.astype(np.float16))
        else:
            tensor = ms.Tensor(a).astype(ms.bfloat16)
        items.append({"name": name, "data": tensor})
    tmp = path.with_name(path.stem + ".part.ckpt")  # save_checkpoint insists on the .ckpt suffix
    ms.save_checkpoint(items, str(tmp), **save_options)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_yaml(spec: TinySpec, path: Path, **overrides) -> Path:
    cfg = dict(type="LlamaConfig", batch_size=1, seq_length=spec.seq_length, hidden_size=spec.dim,
               num_layers=spec.layers, num_heads=spec.heads, n_kv_heads=spec.kv_heads, vocab_size=spec.vocab,
               intermediate_size=spec.ffn, rms_norm_eps=spec.eps, theta=spec.theta, bos_token_id=spec.bos,
               eos_token_id=spec.eos, pad_token_id=0, compute_dtype=spec.dtype, param_init_type=spec.dtype,
               use_past=True, use_flash_attention=False, max_decode_length=64, top_k=3, top_p=1.0,
               do_sample=False, repetition_penalty=1.0, checkpoint_name_or_path=spec.name)
    cfg.update(overrides)
    # Written as MindFormers-on-Ascend yaml: extra sections and keys we must ignore.
    doc = {"seed": 0, "run_mode": "predict", "context": {"mode": 0, "device_target": "Ascend"},
           "parallel_config": {"data_parallel": 1, "model_parallel": 1},
           "model": {"model_config": cfg, "arch": {"type": "LlamaForCausalLM"}}}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")  # JSON is valid yaml
    return path


def cached_model(spec: TinySpec) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """(ckpt, yaml, weights) for ``spec``, writing the checkpoint on first use."""
    folder = CACHE / "models"
    folder.mkdir(parents=True, exist_ok=True)
    weights = make_weights(spec)
    tag = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]  # a changed spec gets a new file
    ckpt = folder / f"{spec.name}-{tag}.ckpt"
    if not ckpt.exists():
        write_ckpt(spec, weights, ckpt)
    return ckpt, write_yaml(spec, folder / f"{spec.name}.yaml"), weights


# One-layer versions of both shapes: their cached keys and values depend only on the token and its
# position, so a KV cache moved to other positions must equal a fresh prefill (the context-shift tests).
ONE_LAYER_MHA = TinySpec("one_layer_mha_fp16", dim=64, layers=1, heads=4, kv_heads=4, vocab=32000, ffn=172,
                         theta=10000.0, dtype="float16")
ONE_LAYER_GQA = TinySpec("one_layer_gqa_bf16", dim=128, layers=1, heads=4, kv_heads=2, vocab=128256, ffn=384,
                         theta=500000.0, dtype="bfloat16", bos=128000, eos=128001)
