"""8-bit weights in blocks of 32 with one float32 scale each (llama.cpp's Q8_0 rule).

scale = max|w| / 127 over the block; value = round-half-away(w / scale). The
quantization error is at most half a step (scale / 2) per weight, which moves
a model's perplexity by well under 1% (measured on the built-in model; see the
README). Rows are quantized in slices read from the file, so memory never holds
a tensor twice.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import PARALLEL, widen
from .matvec import BLOCK


# Exact IEEE arithmetic (no fastmath): the scale and the rounding must be what the rule says,
# not a reciprocal approximation that moves values across a rounding boundary.
@njit(**dict(PARALLEL, fastmath=False))
def quantize_rows(W, out_q, out_s):
    """Quantize stored rows ``W`` (fp16/bf16/float32) into ``out_q`` (int8) and ``out_s`` (float32 scales)."""
    n, k = W.shape
    for r in prange(n):
        row = W[r]
        for b in range(k // BLOCK):
            amax = np.float32(0.0)
            for j in range(b * BLOCK, b * BLOCK + BLOCK):
                amax = max(amax, abs(widen(row[j])))
            scale = amax / np.float32(127.0)
            inv = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
            out_s[r, b] = scale
            for j in range(b * BLOCK, b * BLOCK + BLOCK):
                v = widen(row[j]) * inv
                out_q[r, j] = np.int8(np.floor(abs(v) + np.float32(0.5)) * (1 if v >= 0 else -1))


def quantized_bytes(shape: tuple[int, int]) -> int:
    rows, k = shape
    return rows * k + rows * (k // BLOCK) * 4


def can_quantize(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] % BLOCK == 0
