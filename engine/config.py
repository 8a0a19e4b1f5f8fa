"""Model configuration, read from the MindFormers-style yaml our users already have.

Only ``model: model_config:`` matters to us. A yaml written for MindFormers on
Ascend carries many more keys (parallel settings, runner options, dtypes,
generation defaults...): keys that do not change the model's arithmetic are
ignored; those that do are type-checked with a message naming the file and
the key. RoPE scaling is honoured (LLaMA3.1's ``llama3`` rule and plain
``linear``); any other scaling is refused rather than silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import yaml

from .errors import ConfigError, quote

ROPE_SCALING_TYPES = ("llama3", "linear")


@dataclass(frozen=True)
class RopeScaling:
    """LLaMA3.1-style (``llama3``) or ``linear`` stretching of RoPE's frequencies for long contexts."""

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


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
    seq_length: int = 4096
    tie_word_embeddings: bool = False
    rope_scaling: RopeScaling | None = None

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
            raise ConfigError(f"{source}: model_config.{key} {why}", path=source,
                              code="config_value_invalid", params={"source": source, "key": key, "why": why})
        for key in ("hidden_size", "num_layers", "num_heads", "vocab_size", "seq_length"):
            if getattr(self, key) <= 0:
                bad(key, f"must be a positive integer, got {getattr(self, key)}")
        if self.n_kv_heads is not None and self.n_kv_heads <= 0:
            bad("n_kv_heads", f"must be a positive integer, got {self.n_kv_heads}")
        if self.hidden_size % self.num_heads:
            bad("num_heads", f"({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        if self.head_dim % 2:
            bad("num_heads", f"gives an odd head size {self.head_dim}; RoPE needs an even one")
        if self.num_heads % self.kv_heads:
            bad("n_kv_heads", f"({self.kv_heads}) must divide num_heads ({self.num_heads})")
        if self.ffn_size <= 0:
            bad("intermediate_size", f"must be a positive integer, got {self.ffn_size}")
        if not self.rms_norm_eps > 0 or not math.isfinite(self.rms_norm_eps):
            bad("rms_norm_eps", "must be > 0")
        if not self.theta > 0 or not math.isfinite(self.theta):
            bad("theta", "must be > 0")
        return self


def rope_inv_frequencies(cfg: ModelConfig) -> np.ndarray:
    """RoPE's inverse frequencies (float64, head_dim/2), with the config's scaling applied.

    The ``llama3`` rule (Meta's ``apply_scaling``): wavelengths longer than
    original/low_freq_factor are divided by ``factor``, shorter than
    original/high_freq_factor kept, and those between blended smoothly.
    """
    hd = cfg.head_dim
    inv = 1.0 / cfg.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    s = cfg.rope_scaling
    if s is None:
        return inv
    if s.kind == "linear":
        return inv / s.factor
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * inv / s.factor + smooth * inv
    return np.where(wavelen < high_wavelen, inv, np.where(wavelen > low_wavelen, inv / s.factor, blended))


_FIELD_TYPES = {f.name: f.type for f in fields(ModelConfig)}


def _coerce(key: str, value, source: str):
    kind = _FIELD_TYPES[key].replace(" | None", "")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if "None" in _FIELD_TYPES[key]:
            return None
        raise ConfigError(f"{source}: model_config.{key} must be set (got an empty value)", path=source,
                          code="config_value_empty", params={"source": source, "key": key})
    try:
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower() == "true"
            return bool(value)
        raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"{source}: model_config.{key} should be {kind}, got {quote(str(value))}. Fix that line of the yaml.",
            path=source,
            code="config_value_type",
            params={"source": source, "key": key, "kind": kind, "value": quote(str(value))}) from None


def _rope_scaling(value, source: str) -> RopeScaling | None:
    """MindFormers/HF ``rope_scaling: {type|rope_type: llama3, factor: 8.0, ...}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: model_config.rope_scaling should be a mapping, got {quote(str(value))}.",
                          path=source,
                          code="config_rope_scaling_type", params={"source": source, "value": quote(str(value))})
    kind = str(value.get("rope_type", value.get("type", ""))).lower()
    if kind in ("", "default", "none"):
        return None
    if kind not in ROPE_SCALING_TYPES:
        raise ConfigError(f"{source}: model_config.rope_scaling type {quote(kind)} is not supported (supported: "
                          f"{', '.join(ROPE_SCALING_TYPES)}). Remove it or use a config made for this model.",
                          path=source,
                          code="config_rope_scaling_kind",
                          params={"source": source, "kind": quote(kind), "supported": ", ".join(ROPE_SCALING_TYPES)})
    try:
        scaling = RopeScaling(kind, float(value["factor"]), float(value.get("low_freq_factor", 1.0)),
                              float(value.get("high_freq_factor", 4.0)),
                              int(value.get("original_max_position_embeddings", 8192)))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{source}: model_config.rope_scaling needs a numeric factor (and, for llama3, "
                          "low_freq_factor, high_freq_factor, original_max_position_embeddings).", path=source,
                          code="config_rope_scaling_factor", params={"source": source}) from None
    if not scaling.factor > 0 or (kind == "llama3" and not scaling.high_freq_factor > scaling.low_freq_factor > 0):
        raise ConfigError(f"{source}: model_config.rope_scaling has out-of-range values.", path=source,
                          code="config_rope_scaling_range", params={"source": source})
    return scaling


# MindFormers spells a few keys differently across versions.
_ALIASES = {"rope_theta": "theta", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
            "num_key_value_heads": "n_kv_heads", "ffn_hidden_size": "intermediate_size",
            "max_position_embeddings": "seq_length"}


def _mindformers_scaling(model_config: dict, source: str) -> dict | None:
    """MindFormers spells RoPE scaling ``extend_method: LLAMA3`` (or ``PI``) + ``scaling_factor``."""
    method = str(model_config.get("extend_method") or "None").strip().upper()
    if method in ("NONE", ""):
        return None
    factor = model_config.get("scaling_factor")
    if method == "LLAMA3":
        return dict(factor, rope_type="llama3") if isinstance(factor, dict) else {"rope_type": "llama3", "factor": factor}
    if method == "PI":
        return {"rope_type": "linear", "factor": factor.get("factor") if isinstance(factor, dict) else factor}
    raise ConfigError(f"{source}: model_config.extend_method {quote(method)} is not supported (supported: None, "
                      "PI, LLAMA3). Remove it or use a config made for this model.", path=source,
                      code="config_extend_method", params={"source": source, "method": quote(method)})


def config_from_dict(model_config: dict, source: str = "config") -> ModelConfig:
    values = {}
    for key, value in model_config.items():
        key = _ALIASES.get(key, key)
        if key == "rope_scaling":
            values[key] = _rope_scaling(value, source)
        elif key in _FIELD_TYPES:
            values[key] = _coerce(key, value, source)
    if "rope_scaling" not in values and "extend_method" in model_config:
        values["rope_scaling"] = _rope_scaling(_mindformers_scaling(model_config, source), source)
    return ModelConfig(**values).validate(source)


def load_config(path: str | Path) -> ModelConfig:
    """Read ``model.model_config`` from a MindFormers yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}. The configs/ folder has predict_llama2_7b.yaml "
                          "and predict_llama3_8b.yaml; choose one of those.", path=path,
                          code="config_not_found", params={"path": path})
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path} is not valid yaml: {quote(first, 120)}", path=path,
                          code="config_not_yaml", params={"path": path, "error": quote(first, 120)}) from None
    model = (doc or {}).get("model") if isinstance(doc, dict) else None
    model_config = model.get("model_config") if isinstance(model, dict) else None
    if not isinstance(model_config, dict):
        raise ConfigError(f"{path} has no 'model: model_config:' section; it does not look like a "
                          "MindFormers model config. Use configs/predict_llama2_7b.yaml as an example.", path=path,
                          code="config_no_model_section", params={"path": path})
    return config_from_dict(model_config, str(path))
