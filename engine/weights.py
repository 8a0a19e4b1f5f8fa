"""Open a weight file and check it against the config before any memory is spent.

Every name, shape and dtype is compared with what the config implies; all
problems are collected and reported in one message that names the file, so a
LLaMA2 checkpoint given with ``-V 3`` is refused in a second, not after
minutes of loading.
"""

from __future__ import annotations

import re
from pathlib import Path

from .ckpt_reader import CkptReader
from .config import ModelConfig
from .errors import CheckpointError
from .safetensors_reader import SafetensorsReader
from .tensor_source import TensorSource

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
EMBEDDING = "model.tok_embeddings.embedding_weight"
LM_HEAD = "lm_head.weight"
# Training checkpoints also carry optimizer state and counters; those are not ours to judge.
_MODEL_PREFIXES = ("model.", "lm_head.")
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, kv = cfg.hidden_size, cfg.kv_heads * cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {EMBEDDING: (cfg.vocab_size, h)}
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "attention.wq.weight": (h, h), p + "attention.wk.weight": (kv, h),
            p + "attention.wv.weight": (kv, h), p + "attention.wo.weight": (h, h),
            p + "feed_forward.w1.weight": (cfg.ffn_size, h), p + "feed_forward.w2.weight": (h, cfg.ffn_size),
            p + "feed_forward.w3.weight": (cfg.ffn_size, h),
            p + "attention_norm.weight": (h,), p + "ffn_norm.weight": (h,),
        })
    shapes["model.norm_out.weight"] = (h,)
    if not cfg.tie_word_embeddings:
        shapes[LM_HEAD] = (cfg.vocab_size, h)
    return shapes


def open_weights(path: str | Path) -> TensorSource:
    """Pick the reader by extension; ``.ckpt`` is the MindSpore format."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}")
    if path.suffix.lower() == ".safetensors":
        return SafetensorsReader(path)
    return CkptReader(path)


def _hint(cfg: ModelConfig, source: TensorSource) -> str:
    """Say which model the file looks like, when it plainly is another one."""
    emb = source.tensors.get(EMBEDDING)
    layers = {int(m.group(1)) for n in source.tensors if (m := _LAYER_RE.match(n))}
    found = f"{len(layers)} layers" + (f", vocabulary {emb.shape[0]}, hidden size {emb.shape[1]}"
                                       if emb and len(emb.shape) == 2 else "")
    guess = ""
    if emb and emb.shape[0] == 32000:
        guess = " It looks like a LLaMA2 checkpoint: use -V 2 with configs/predict_llama2_7b.yaml."
    elif emb and emb.shape[0] == 128256:
        guess = " It looks like a LLaMA3 checkpoint: use -V 3 with configs/predict_llama3_8b.yaml."
    return (f" The file has {found}; the config expects {cfg.num_layers} layers, vocabulary "
            f"{cfg.vocab_size}, hidden size {cfg.hidden_size}.{guess}")


def validate_weights(source: TensorSource, cfg: ModelConfig, config_name: str = "the config") -> None:
    """Raise one CheckpointError listing every mismatch between file and config."""
    expected = expected_shapes(cfg)
    problems: list[str] = []
    missing = [n for n in expected if n not in source.tensors]
    for name, shape in expected.items():
        info = source.tensors.get(name)
        if info is None:
            continue
        if tuple(info.shape) != shape:
            problems.append(f"{name} has shape {list(info.shape)}, expected {list(shape)}")
        elif info.dtype not in FLOAT_DTYPES:
            problems.append(f"{name} has dtype {info.dtype}, expected one of {', '.join(FLOAT_DTYPES)}")
    unexpected = [n for n in source.tensors if n.startswith(_MODEL_PREFIXES) and n not in expected
                  and not (cfg.tie_word_embeddings and n == LM_HEAD)]
    if missing:
        problems.append(f"{len(missing)} tensors are missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors are not part of this model (e.g. {', '.join(unexpected[:3])})")
    if problems:
        raise CheckpointError(
            f"{source.path} does not match {config_name}: " + "; ".join(problems[:6])
            + ("; ..." if len(problems) > 6 else "") + "." + _hint(cfg, source)
        )
