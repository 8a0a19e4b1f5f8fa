"""MindFormers' LLaMA tensor names, and the other names the same tensors go by (HF, GGUF).

Everything in the engine speaks MindFormers names (what our users' checkpoints
use); readers translate other spellings here, in one place.
"""

from __future__ import annotations

import re

EMBEDDING = "model.tok_embeddings.embedding_weight"
NORM_OUT = "model.norm_out.weight"
LM_HEAD = "lm_head.weight"
# Per layer: short name -> full-name suffix after "model.layers.{i}."
LAYER_TENSORS = {
    "wq": "attention.wq.weight", "wk": "attention.wk.weight", "wv": "attention.wv.weight",
    "wo": "attention.wo.weight", "w1": "feed_forward.w1.weight", "w2": "feed_forward.w2.weight",
    "w3": "feed_forward.w3.weight", "attention_norm": "attention_norm.weight", "ffn_norm": "ffn_norm.weight",
}
# Training checkpoints also carry optimizer state and counters; those are not ours to judge.
MODEL_PREFIXES = ("model.", "lm_head.")
LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")

_HF_LAYER = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}
_HF_TOP = {"model.embed_tokens.weight": EMBEDDING, "model.norm.weight": NORM_OUT, "lm_head.weight": LM_HEAD}
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")

GGUF_LAYER = {
    "attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv",
    "attn_output": "attention.wo", "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2",
    "ffn_up": "feed_forward.w3", "attn_norm": "attention_norm", "ffn_norm": "ffn_norm",
}
_GGUF_TOP = {"token_embd.weight": EMBEDDING, "output_norm.weight": NORM_OUT, "output.weight": LM_HEAD}


def layer_name(i: int, short: str) -> str:
    return f"model.layers.{i}.{LAYER_TENSORS[short]}"


def expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Every tensor a LLaMA with config ``cfg`` has, by MindFormers name, [out, in] layout."""
    h, kv = cfg.hidden_size, cfg.kv_heads * cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {EMBEDDING: (cfg.vocab_size, h)}
    per_layer = {"wq": (h, h), "wk": (kv, h), "wv": (kv, h), "wo": (h, h), "w1": (cfg.ffn_size, h),
                 "w2": (h, cfg.ffn_size), "w3": (cfg.ffn_size, h), "attention_norm": (h,), "ffn_norm": (h,)}
    for i in range(cfg.num_layers):
        shapes.update({layer_name(i, short): shape for short, shape in per_layer.items()})
    shapes[NORM_OUT] = (h,)
    if not cfg.tie_word_embeddings:
        shapes[LM_HEAD] = (cfg.vocab_size, h)
    return shapes


def is_recomputed_buffer(name: str) -> bool:
    """Older HF exports carry RoPE's inverse frequencies; we compute them from the config."""
    return name.endswith("rotary_emb.inv_freq")


def hf_to_ours(name: str) -> str:
    """Map a HF transformers LLaMA tensor name to the MindFormers one (others unchanged)."""
    if name in _HF_TOP:
        return _HF_TOP[name]
    match = _HF_LAYER_RE.match(name)
    if match and match.group(2) in _HF_LAYER:
        return f"model.layers.{match.group(1)}.{_HF_LAYER[match.group(2)]}.weight"
    return name


def gguf_to_ours(name: str) -> str | None:
    """MindFormers name of a llama.cpp GGUF tensor, or None for tensors we do not use."""
    if name in _GGUF_TOP:
        return _GGUF_TOP[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in GGUF_LAYER:
        return f"model.layers.{parts[1]}.{GGUF_LAYER[parts[2]]}.weight"
    return None
