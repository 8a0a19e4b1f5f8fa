"""Model configuration, read from the MindFormers-style yaml our users already have.

Only ``model: model_config:`` matters to us. A yaml written for MindFormers on
Ascend carries many more keys (parallel settings, runner options...): unknown
keys are ignored, known ones are type-checked with a message naming the file
and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from .errors import ConfigError

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    n_kv_heads: int | None = None
    vocab_size: int = 32000
    intermediate_size: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rms_norm_eps: float = 1e-5
    theta: float = 10000.0
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    seq_length: int = 4096
    max_decode_length: int = 512
    compute_dtype: str = "float32"
    param_init_type: str = "float16"
    tie_word_embeddings: bool = False
    checkpoint_name_or_path: str = ""
    # generation defaults (MindFormers keeps them in model_config too)
    top_k: int = 0
    top_p: float = 1.0
    do_sample: bool = False
    repetition_penalty: float = 1.0
    temperature: float = 1.0

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.num_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def ffn_size(self) -> int:
        """Meta's rule when the yaml gives multiple_of/ffn_dim_multiplier instead of a size."""
        if self.intermediate_size:
            return self.intermediate_size
        hidden = int(2 * 4 * self.hidden_size / 3)
        if self.ffn_dim_multiplier:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    def with_overrides(self, **changes) -> "ModelConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self, source: str = "config") -> "ModelConfig":
        def bad(key, why):
            raise ConfigError(f"{source}: model_config.{key} {why}")
        for key in ("hidden_size", "num_layers", "num_heads", "vocab_size", "seq_length"):
            if getattr(self, key) <= 0:
                bad(key, f"must be a positive integer, got {getattr(self, key)}")
        if self.hidden_size % self.num_heads:
            bad("num_heads", f"({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        if self.head_dim % 2:
            bad("num_heads", f"gives an odd head size {self.head_dim}; RoPE needs an even one")
        if self.num_heads % self.kv_heads:
            bad("n_kv_heads", f"({self.kv_heads}) must divide num_heads ({self.num_heads})")
        for key in ("compute_dtype", "param_init_type"):
            if getattr(self, key) not in DTYPES:
                bad(key, f"must be one of {', '.join(DTYPES)}, got {getattr(self, key)!r}")
        if not self.rms_norm_eps > 0:
            bad("rms_norm_eps", "must be > 0")
        if not self.theta > 0:
            bad("theta", "must be > 0")
        return self


_FIELD_TYPES = {f.name: f.type for f in fields(ModelConfig)}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
                  "mstype.float32": "float32", "mstype.float16": "float16", "mstype.bfloat16": "bfloat16"}


def _coerce(key: str, value, source: str):
    kind = _FIELD_TYPES[key].replace(" | None", "")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if "None" in _FIELD_TYPES[key]:
            return None
        if kind == "str":
            return ""
        raise ConfigError(f"{source}: model_config.{key} must be set (got an empty value)")
    try:
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower() == "true"
            return bool(value)
        text = str(value)
        return _DTYPE_ALIASES.get(text.lower(), text.lower()) if key in ("compute_dtype", "param_init_type") else text
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: model_config.{key} should be {kind}, got {value!r}. Fix that line of the yaml."
        ) from None


# MindFormers spells a few keys differently across versions.
_ALIASES = {"rope_theta": "theta", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
            "num_key_value_heads": "n_kv_heads", "ffn_hidden_size": "intermediate_size",
            "max_position_embeddings": "seq_length"}


def config_from_dict(model_config: dict, source: str = "config") -> ModelConfig:
    values = {}
    for key, value in model_config.items():
        key = _ALIASES.get(key, key)
        if key in _FIELD_TYPES:
            values[key] = _coerce(key, value, source)
    return ModelConfig(**values).validate(source)


def load_config(path: str | Path) -> ModelConfig:
    """Read ``model.model_config`` from a MindFormers yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}. The configs/ folder has predict_llama2_7b.yaml "
                          "and predict_llama3_8b.yaml; pass one with -C.")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid yaml: {exc}") from None
    model = (doc or {}).get("model") if isinstance(doc, dict) else None
    model_config = model.get("model_config") if isinstance(model, dict) else None
    if not isinstance(model_config, dict):
        raise ConfigError(f"{path} has no 'model: model_config:' section; it does not look like a "
                          "MindFormers model config. Use configs/predict_llama2_7b.yaml as an example.")
    return config_from_dict(model_config, str(path))
