"""Which weight formats the cpu executor can quantize to at load, and what each costs in memory.

``int8`` is llama.cpp's Q8_0 (blocks of 32, one fp16 scale each); ``int4`` is
4-bit blocks of 32 in the layout ``INT4_LAYOUT`` names, chosen by measured
perplexity and speed (README): ``q4_k`` (llama.cpp's Q4_K: a searched scale and
minimum per block in 6 bits under one fp16 pair per 256 weights, 4.5 bits a
weight), ``q4_1`` (fp16 scale and minimum per block, 5 bits) or ``q4_0`` (a
scale only, 4.5 bits). q4_k reads Q4_0's bytes with a smaller error than Q4_1's.
``LLAMA_DESK_INT4_LAYOUT`` picks another one, to measure them against each other.
The rules, packing and kernels are in ``quant_formats`` and ``dot_quant``.
"""

from __future__ import annotations

import os

from engine.errors import ConfigError

from .dot_quant import BLOCK, Q4_0, Q4_1, Q4_K, Q8
from .quant_formats import packed_bytes

INT4_LAYOUT = os.environ.get("LLAMA_DESK_INT4_LAYOUT", "").strip().lower() or "q4_k"   # to measure layouts
_CODES = {"int8": Q8, "q4_0": Q4_0, "q4_1": Q4_1, "q4_k": Q4_K}
QUANTIZED = ("int8", "int4")


def format_code(weight_format: str) -> int:
    """The packed format a ``weight_format`` choice ("int8", "int4") quantizes to."""
    name = INT4_LAYOUT if weight_format == "int4" else weight_format
    if name in _CODES:
        return _CODES[name]
    if weight_format == "int4":
        raise ConfigError(f"LLAMA_DESK_INT4_LAYOUT={INT4_LAYOUT!r} is not a 4-bit layout: set it to q4_k, q4_1 or "
                          "q4_0, or unset it for the default (q4_k).", code="unknown_int4_layout",
                          params={"layout": INT4_LAYOUT})
    raise ConfigError(f"{weight_format!r} is not a weight format the cpu backend quantizes to (int8, int4).",
                      code="unknown_weight_format", params={"weight_format": weight_format, "choices": "int8, int4"})


def head_format(name: str, cfg, weight_format: str) -> str:
    """``weight_format`` for every matrix but the vocabulary projection, which stays 8-bit under int4.

    The logits are the most sensitive product (llama.cpp keeps its output matrix in 6 bits for the same
    reason): on the built-in model a 4-bit head alone moved perplexity by +8%. A 6-bit head (llama.cpp's Q6_K
    rule per 32) was measured: +0.11% against -0.63% with 8 bits, and its kernel read 18.8 GB/s against
    int8's 28.3, so it saved memory (0.13 GB at 8B) but no time (README).
    """
    from engine.weights.names import EMBEDDING, LM_HEAD

    head = EMBEDDING if cfg.tie_word_embeddings else LM_HEAD
    return "int8" if weight_format == "int4" and name == head else weight_format


def quantized_bytes(shape: tuple[int, int], weight_format: str) -> int:
    rows, k = shape
    return packed_bytes(format_code(weight_format), rows, k)


def can_quantize(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] % BLOCK == 0
