"""8-bit and 4-bit weight blocks (llama.cpp's Q8_0, Q4_0, Q4_1 rules), packed "rows in lanes", and 8-bit activations.

Each block of 32 weights of a row gets an fp16 scale d (and for Q4_1 a
minimum m), chosen by llama.cpp's reference rules, so a block holds the same
integers llama.cpp would store:
  * Q8_0: d = max|w| / 127, q = round(w / d) in -127..127;
  * Q4_0: d = w* / -8 with w* the weight of largest magnitude, n = min(15, floor(w / d + 8.5));
  * Q4_1: d = (max - min) / 15, m = min, n = min(15, floor((w - m) / d + 0.5)).
Blocks of a group of ``GROUP`` rows are stored together (``dot_quant`` says
why and how). The arithmetic here is exact IEEE (no fastmath): the rounding
must be the rule's, not a reciprocal approximation's. A block holding NaN or
Inf is counted, so loading can refuse the tensor (a quantized copy would hide
it). Activations are quantized per token like Q8_0 weights, plus each block's
integer sum.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .dot_quant import BLOCK, GROUP, Q4_0, Q4_1, Q8, block_bytes, header_bytes
from .jit import KERNEL, PARALLEL, to_half_bits, widen

EXACT = dict(KERNEL, fastmath=False)
FORMAT_NAMES = {Q8: "int8", Q4_0: "q4_0", Q4_1: "q4_1"}


def packed_shape(fmt: int, rows: int, k: int) -> tuple[int, int]:
    """(groups, bytes per group) of a [rows, k] matrix."""
    return (rows + GROUP - 1) // GROUP, (k // BLOCK) * block_bytes(fmt)


def packed_bytes(fmt: int, rows: int, k: int) -> int:
    groups, per_group = packed_shape(fmt, rows, k)
    return groups * per_group


@njit(**EXACT)
def _round_away(v):
    return np.floor(abs(v) + np.float32(0.5)) * (1 if v >= 0 else -1)


@njit(**EXACT)
def _put_half(out, at, value):
    bits = to_half_bits(np.float32(value))
    out[at] = np.uint8(bits & 0xFF)
    out[at + 1] = np.uint8(bits >> 8)


@njit(**EXACT)
def _code_offset(fmt, lane, e):
    """Byte of element ``e`` (0..31) of lane ``lane`` within a block, after the header."""
    if fmt == Q8:
        return (e >> 2) * 4 * GROUP + 4 * lane + (e & 3)
    return ((e & 15) >> 2) * 4 * GROUP + 4 * lane + (e & 3)


@njit(**EXACT)
def _quantize_block(fmt, values, out, base, lane):
    """One block of one row into a group's bytes; returns 1 if it held NaN or Inf."""
    lo, hi, amax, extreme = values[0], values[0], np.float32(0.0), np.float32(0.0)
    for v in values:
        if not np.isfinite(v):
            return 1
        lo, hi = min(lo, v), max(hi, v)
        if abs(v) > amax:
            amax, extreme = abs(v), v
    head = header_bytes(fmt)
    if fmt == Q8:
        d = amax / np.float32(127.0)
    elif fmt == Q4_0:
        d = extreme / np.float32(-8.0)
    else:
        d = (hi - lo) / np.float32(15.0)
        _put_half(out, base + 2 * GROUP + 2 * lane, lo)
    inv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
    _put_half(out, base + 2 * lane, d)
    for e in range(BLOCK):
        at = base + head + _code_offset(fmt, lane, e)
        if fmt == Q8:
            out[at] = np.uint8(np.int32(_round_away(values[e] * inv)) + 128)
            continue
        if fmt == Q4_0:
            n = min(15, np.int32(np.floor(values[e] * inv + np.float32(8.5))))
        else:
            n = min(15, np.int32(np.floor((values[e] - lo) * inv + np.float32(0.5))))
        out[at] |= np.uint8(n << 4) if e >= 16 else np.uint8(n)
    return 0


@njit(**dict(PARALLEL, fastmath=False))
def pack_rows(fmt, W, out):
    """Quantize rows ``W`` (fp16/bf16 bits or float32, a whole number of groups or the matrix's end) into
    ``out`` (uint8 [groups, bytes per group], zeroed); returns how many blocks held NaN or Inf."""
    rows, k = W.shape
    per_block = block_bytes(fmt)
    bad = np.zeros(rows, np.int64)
    for r in prange(rows):
        values = np.empty(BLOCK, np.float32)
        for b in range(k // BLOCK):
            for e in range(BLOCK):
                values[e] = widen(W[r, b * BLOCK + e])
            bad[r] += _quantize_block(fmt, values, out[r // GROUP], b * per_block, r % GROUP)
    return bad.sum()


@njit(**EXACT)
def _half(data, at):
    return widen(np.uint16(np.uint16(data[at]) | (np.uint16(data[at + 1]) << np.uint16(8))))


@njit(**KERNEL)
def unpack_rows(fmt, P, r0, r1, k, out):
    """out[i] = float32 values of row r0 + i (dequantized), for i < r1 - r0."""
    per_block, head = block_bytes(fmt), header_bytes(fmt)
    for i in range(r1 - r0):
        r = r0 + i
        group, lane = P[r // GROUP], r % GROUP
        for b in range(k // BLOCK):
            base = b * per_block
            d = _half(group, base + 2 * lane)
            m = _half(group, base + 2 * GROUP + 2 * lane) if fmt == Q4_1 else np.float32(0.0)
            for e in range(BLOCK):
                byte = np.int32(group[base + head + _code_offset(fmt, lane, e)])
                if fmt == Q8:
                    value = d * np.float32(byte - 128)
                else:
                    n = (byte >> 4) if e >= 16 else (byte & 15)
                    value = d * np.float32(n - 8) if fmt == Q4_0 else d * np.float32(n) + m
                out[i, b * BLOCK + e] = value


@njit(**EXACT)
def quantize_activations(X, XQ, XD, XS):
    """Rows of X (float32 [T, k]) -> 8-bit (XQ int8) or 16-bit (XQ int16) blocks, scales XD, integer sums XS.

    A block holding NaN or Inf gets a NaN scale, so the product is NaN too (never a silent number).
    """
    top = np.float32(127.0) if XQ.itemsize == 1 else np.float32(32767.0)
    for t in range(X.shape[0]):
        for b in range(X.shape[1] // BLOCK):
            amax, finite = np.float32(0.0), True
            for j in range(b * BLOCK, b * BLOCK + BLOCK):
                finite = finite and np.isfinite(X[t, j])
                amax = max(amax, abs(X[t, j]))
            d = amax / top
            inv = np.float32(1.0) / d if d > 0 else np.float32(0.0)
            total = 0
            for j in range(b * BLOCK, b * BLOCK + BLOCK):
                q = np.int32(_round_away(X[t, j] * inv)) if finite else 0
                XQ[t, j] = q
                total += q
            XD[t, b] = d if finite else np.float32(np.nan)
            XS[t, b] = total
