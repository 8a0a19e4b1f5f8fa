"""The MindFormers ``LlamaConfig`` for a user's yaml, changed only where the CPU needs it.

The yaml's ``model_config`` section goes to MindFormers as it is, except:
values our config reader already checked replace their raw yaml text (a yaml
``1e-05`` is a string to a yaml parser, and MindFormers would do arithmetic
with it); keys ``LlamaConfig`` does not take are dropped; and the settings
below are forced, because the yaml was written for Ascend:

- incremental inference in MindFormers' chunked-prefill mode, static shapes,
  no flash attention, no fused RMSNorm (those kernels are Ascend-only);
- every dtype float32 (MindSpore's CPU kernels refuse bfloat16 and are slow
  in float16);
- one sequence, a KV cache of our context length in blocks of ``BLOCK_SIZE``;
- no ``checkpoint_name_or_path``: MindFormers must not load weights itself
  (it would read the whole file at once); we hand it every tensor.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from engine.config import ModelConfig

BLOCK_SIZE = 16
_FLOAT32_KEYS = ("compute_dtype", "param_init_type", "embedding_init_type", "layernorm_compute_type",
                 "softmax_compute_type", "rotary_dtype", "residual_dtype")
# Our checked values of keys that mean the same thing to MindFormers.
_CHECKED_KEYS = ("hidden_size", "num_layers", "num_heads", "n_kv_heads", "vocab_size", "intermediate_size",
                 "multiple_of", "ffn_dim_multiplier", "rms_norm_eps", "theta", "bos_token_id", "eos_token_id",
                 "tie_word_embeddings")
CPU_SETTINGS = {"use_past": True, "chunk_prefill": True, "is_dynamic": False, "use_flash_attention": False,
                "fused_rms_norm": False, "use_rope_slice": True, "qkv_concat": False, "batch_size": 1,
                "checkpoint_name_or_path": "", **{key: "float32" for key in _FLOAT32_KEYS}}


def cache_capacity(max_seq_len: int) -> int:
    """Positions the KV cache holds: the context, rounded up to whole blocks."""
    return -(-max_seq_len // BLOCK_SIZE) * BLOCK_SIZE


def yaml_model_config(path: str | Path | None) -> dict:
    """The yaml's ``model: model_config:`` section (already validated by ``load_config``), or {}."""
    if path is None:
        return {}
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    section = (doc.get("model") or {}).get("model_config")
    return dict(section) if isinstance(section, dict) else {}


def mindformers_settings(cfg: ModelConfig, raw: dict, capacity: int, config_class) -> dict:
    """Keyword arguments for ``config_class`` (MindFormers' LlamaConfig)."""
    accepted = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    settings = {key: value for key, value in raw.items() if key in accepted}
    settings.update({key: getattr(cfg, key) for key in _CHECKED_KEYS})
    settings.update(_rope_extension(cfg, raw))
    settings.update(CPU_SETTINGS)
    settings.update(seq_length=capacity, block_size=BLOCK_SIZE, num_blocks=capacity // BLOCK_SIZE)
    return settings


def _rope_extension(cfg: ModelConfig, raw: dict) -> dict:
    """MindFormers' spelling of an HF-style ``rope_scaling`` (a MindFormers yaml's own is kept)."""
    scaling = cfg.rope_scaling
    if scaling is None or str(raw.get("extend_method", "None")) != "None":
        return {}
    if scaling.kind == "linear":
        return {"extend_method": "linear", "scaling_factor": {"factor": scaling.factor}}
    return {"extend_method": "LLAMA3",
            "scaling_factor": {"factor": scaling.factor, "low_freq_factor": scaling.low_freq_factor,
                               "high_freq_factor": scaling.high_freq_factor,
                               "original_max_position_embeddings": scaling.original_max_position_embeddings}}
