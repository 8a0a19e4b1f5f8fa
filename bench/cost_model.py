"""What one decoded token must read and compute, per operation, for a LLaMA shape and weight format.

Decode reads every weight once per token (plus the KV cache written so far),
so bytes / bandwidth is a hard lower bound on seconds per token. The benchmark
prints this table beside its measurements so each gap is visible per
operation class.
"""

from __future__ import annotations

from dataclasses import dataclass

# int8/q4_0: + an fp16 scale per 32 weights; q4_1: + a scale and a minimum; q4_k: 6-bit ones, 2 fp16 per 256
BYTES_PER_WEIGHT = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int8": 1.0 + 2.0 / 32, "q4_0": 0.5 + 2.0 / 32,
                    "q4_1": 0.5 + 4.0 / 32, "q4_k": 0.5 + 16.0 / 256, "q6_k": 0.75 + 18.0 / 256}


@dataclass
class Operation:
    name: str
    bytes_read: float
    multiply_adds: float


def decode_cost(cfg, weight_format: str, context: int, kv_bytes: int = 2, head_format: str | None = None) -> list[Operation]:
    """Per-token cost of a decode step at ``context`` cached positions (the vocabulary matrix in ``head_format``,
    by default the others' format)."""
    w = BYTES_PER_WEIGHT[weight_format]
    w_head = BYTES_PER_WEIGHT[head_format or weight_format]
    h, f, layers = cfg.hidden_size, cfg.ffn_size, cfg.num_layers
    kv = cfg.kv_heads * cfg.head_dim
    ops = [
        Operation("embedding row", h * BYTES_PER_WEIGHT["float16"], 0),
        Operation("q/k/v projections", layers * (h * h + 2 * kv * h) * w, layers * (h * h + 2 * kv * h)),
        Operation("attention over the KV cache", layers * 2 * context * kv * kv_bytes,
                  layers * 2 * context * cfg.num_heads * cfg.head_dim),
        Operation("output projection", layers * h * h * w, layers * h * h),
        Operation("feed-forward gate + up", layers * 2 * f * h * w, layers * 2 * f * h),
        Operation("feed-forward down", layers * f * h * w, layers * f * h),
        Operation("vocabulary projection", cfg.vocab_size * h * w_head, cfg.vocab_size * h),
    ]
    return ops


def table(ops: list[Operation], bandwidth_gbps: float) -> list[dict]:
    rows = [{"operation": op.name, "MB_read": round(op.bytes_read / 1e6, 2), "M_multiply_adds": round(op.multiply_adds / 1e6, 2),
             "lower_bound_ms": round(op.bytes_read / (bandwidth_gbps * 1e9) * 1e3, 3)} for op in ops]
    total = sum(op.bytes_read for op in ops)
    rows.append({"operation": "total", "MB_read": round(total / 1e6, 2),
                 "M_multiply_adds": round(sum(op.multiply_adds for op in ops) / 1e6, 2),
                 "lower_bound_ms": round(total / (bandwidth_gbps * 1e9) * 1e3, 3)})
    return rows


def bytes_per_token(cfg, weight_format: str, context: int, kv_bytes: int = 2, head_format: str | None = None) -> float:
    return sum(op.bytes_read for op in decode_cost(cfg, weight_format, context, kv_bytes, head_format))
