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

from .dot_quant import BLOCK, Q4_0, Q4_1, Q4_K, Q6, Q8
from .quant_formats import packed_bytes

INT4_LAYOUT = os.environ.get("LLAMA_DESK_INT4_LAYOUT") or "q4_k"   # the variable: to measure layouts
# The vocabulary matrix under int4 (``head_format``): 6-bit blocks, or "int8".
INT4_HEAD = os.environ.get("LLAMA_DESK_INT4_HEAD") or "q6"
_CODES = {"int8": Q8, "q4_0": Q4_0, "q4_1": Q4_1, "q4_k": Q4_K, "q6": Q6}
QUANTIZED = ("int8", "int4")


def format_code(weight_format: str) -> int:
    """The packed format a ``weight_format`` choice ("int8", "int4") quantizes to."""
    return _CODES[INT4_LAYOUT if weight_format == "int4" else weight_format]


def head_format(name: str, cfg, weight_format: str) -> str:
    """``weight_format`` for every matrix but the vocabulary projection, which gets 6 bits under int4 (``INT4_HEAD``).

    The logits are the most sensitive product (llama.cpp keeps its output matrix in Q6_K in its 4-bit files
    for the same reason): on the built-in model a 4-bit head alone moved perplexity by +8%. 6 bits read 24%
    fewer bytes than 8 (at 8B: 0.42 against 0.56 GB a token) for a perplexity change measured in the README.
    """
    from engine.weights.names import EMBEDDING, LM_HEAD

    head = EMBEDDING if cfg.tie_word_embeddings else LM_HEAD
    return INT4_HEAD if weight_format == "int4" and name == head else weight_format


def quantized_bytes(shape: tuple[int, int], weight_format: str) -> int:
    rows, k = shape
    return packed_bytes(format_code(weight_format), rows, k)


def can_quantize(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] % BLOCK == 0
