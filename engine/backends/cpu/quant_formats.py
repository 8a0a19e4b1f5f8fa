"""8-bit and 4-bit weight blocks (llama.cpp's Q8_0, Q4_0, Q4_1, Q4_K rules), packed "rows in lanes", and 8-bit activations.

Each block of 32 weights of a row gets an fp16 scale d (and for Q4_1 a
minimum m), chosen by llama.cpp's reference rules, so a block holds the same
integers llama.cpp would store:
  * Q8_0: d = max|w| / 127, q = round(w / d) in -127..127;
  * Q4_0: d = w* / -8 with w* the weight of largest magnitude, n = min(15, floor(w / d + 8.5));
  * Q4_1: d = (max - min) / 15, m = min, n = min(15, floor((w - m) / d + 0.5)).
  * Q4_K (super-blocks of 8 blocks): each block's scale and minimum are searched (21 candidate scales
    around (max - min) / 15, each refined by a weighted least-squares fit, weights |w| + rms of the block,
    keeping the smallest weighted error); the 8 scales and 8 minimums are then rounded to 6-bit
    integers under the super-block's largest (fp16 D = largest / 63, M likewise), and every n is
    re-rounded against the block's final D * s and M * m.
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

from .dot_quant import (BLOCK, GROUP, Q4_0, Q4_1, Q4_K, Q8, SUPER, block_bytes, codes_offset, group_bytes,
                        header_bytes, super_offset)
from .jit import KERNEL, PARALLEL, to_half_bits, widen

EXACT = dict(KERNEL, fastmath=False)
FORMAT_NAMES = {Q8: "int8", Q4_0: "q4_0", Q4_1: "q4_1", Q4_K: "q4_k"}


def packed_shape(fmt: int, rows: int, k: int) -> tuple[int, int]:
    """(groups, bytes per group) of a [rows, k] matrix."""
    return (rows + GROUP - 1) // GROUP, group_bytes(fmt, k)


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


@njit(**EXACT)
def _grid_error(x, w, inv, lo, scale, minimum, sums, fixed):
    """Per lane, the w-weighted squared error of the grid n = clip(round(inv * (x - lo)), 0, 15) under the fit
    (scale, minimum): sum w (scale n + minimum - x)^2 from its sums (no second pass over the block). With
    ``fixed`` False, scale and minimum become the grid's least-squares fit first (minimum <= 0)."""
    lanes = x.shape[1]
    sum_l, sum_l2, sum_xl = sums[0], sums[1], sums[2]
    sum_w, sum_x, sum_x2, error = sums[3], sums[4], sums[5], sums[6]
    sum_l[:], sum_l2[:], sum_xl[:] = 0, 0, 0
    for i in range(BLOCK):
        for l in range(lanes):
            n = min(np.float32(15.0), max(np.float32(0.0), np.rint(inv[l] * (x[i, l] - lo[l]))))
            sum_l[l] += w[i, l] * n
            sum_l2[l] += w[i, l] * n * n
            sum_xl[l] += w[i, l] * n * x[i, l]
    for l in range(lanes):
        if not fixed:
            det = sum_w[l] * sum_l2[l] - sum_l[l] * sum_l[l]
            if not det > 0:
                error[l] = np.float32(np.inf)
                continue
            fit_scale = (sum_w[l] * sum_xl[l] - sum_x[l] * sum_l[l]) / det
            fit_min = (sum_l2[l] * sum_x[l] - sum_l[l] * sum_xl[l]) / det
            scale[l] = sum_xl[l] / sum_l2[l] if fit_min > 0 else fit_scale
            minimum[l] = np.float32(0.0) if fit_min > 0 else fit_min
        s, m = scale[l], minimum[l]
        error[l] = (s * s * sum_l2[l] + np.float32(2.0) * s * m * sum_l[l] - np.float32(2.0) * s * sum_xl[l]
                    + m * m * sum_w[l] - np.float32(2.0) * m * sum_x[l] + sum_x2[l])


@njit(**EXACT)
def _fit_blocks(x, w, scale, lo, work):
    """Q4_K: per lane (one row each), the (scale, minimum <= 0) of one block of 32 (``x``, ``w`` [32, lanes])
    minimizing the w-weighted squared error of scale * n + minimum against x, n in 0..15: llama.cpp's search
    (21 trial grids around (max - min) / 15, each fitted by least squares, each starting from the best
    minimum so far), its errors computed from the grid's sums. Rows sit in the inner loops, so they run as
    vectors, each row's sums still taken element by element in order."""
    lanes = x.shape[1]
    hi, inv, best, this_scale, this_min = work[0], work[1], work[2], work[3], work[4]
    sums = work[5:12]
    hi[:], lo[:] = x[0], x[0]
    sum_w, sum_x, sum_x2 = sums[3], sums[4], sums[5]
    sum_w[:], sum_x[:], sum_x2[:] = 0, 0, 0
    for i in range(BLOCK):
        for l in range(lanes):
            lo[l] = min(lo[l], x[i, l])
            hi[l] = max(hi[l], x[i, l])
            sum_w[l] += w[i, l]
            sum_x[l] += w[i, l] * x[i, l]
            sum_x2[l] += w[i, l] * x[i, l] * x[i, l]
    for l in range(lanes):
        lo[l] = min(lo[l], np.float32(0.0))
        inv[l] = np.float32(15.0) / (hi[l] - lo[l]) if hi[l] != lo[l] else np.float32(0.0)
        scale[l] = np.float32(1.0) / inv[l] if hi[l] != lo[l] else np.float32(0.0)
    _grid_error(x, w, inv, lo, scale, lo, sums, True)
    best[:] = sums[6]
    for step in range(21):
        for l in range(lanes):
            inv[l] = (np.float32(-1.0) + np.float32(0.1) * np.float32(step) + np.float32(15.0)) / (hi[l] - lo[l])
        _grid_error(x, w, inv, lo, this_scale, this_min, sums, False)
        for l in range(lanes):
            if hi[l] != lo[l] and sums[6, l] < best[l]:
                best[l], scale[l], lo[l] = sums[6, l], this_scale[l], this_min[l]


@njit(**EXACT)
def _quantize_super(X, blocks, out, base, work):
    """Q4_K: ``blocks`` (1..8) blocks of a group's rows (``X`` float32 [blocks * 32, GROUP], finite) into the
    super-block at ``base`` of the group's bytes."""
    weights, fits, fit_work = work
    scales, minimums = fits[0], fits[1]
    top_scale, top_min, lo, rms = fits[2], fits[3], fits[4], fits[5]
    top_scale[:], top_min[:] = 0, 0
    for j in range(blocks):
        x = X[j * BLOCK:(j + 1) * BLOCK]
        rms[:] = 0
        for i in range(BLOCK):
            for l in range(GROUP):
                rms[l] += x[i, l] * x[i, l]
        for l in range(GROUP):
            rms[l] = np.float32(np.sqrt(rms[l] / np.float32(BLOCK)))
        for i in range(BLOCK):
            for l in range(GROUP):
                weights[i, l] = rms[l] + abs(x[i, l])
        _fit_blocks(x, weights, scales[j], lo, fit_work)
        for l in range(GROUP):
            minimums[j, l] = -lo[l]
            top_scale[l], top_min[l] = max(top_scale[l], scales[j, l]), max(top_min[l], -lo[l])
    for l in range(GROUP):
        inv_scale = np.float32(63.0) / top_scale[l] if top_scale[l] > 0 else np.float32(0.0)
        inv_min = np.float32(63.0) / top_min[l] if top_min[l] > 0 else np.float32(0.0)
        big_d, big_m = top_scale[l] / np.float32(63.0), top_min[l] / np.float32(63.0)
        _put_half(out, base + 2 * l, big_d)
        _put_half(out, base + 2 * GROUP + 2 * l, big_m)
        big_d, big_m = widen(to_half_bits(big_d)), widen(to_half_bits(big_m))
        for j in range(blocks):
            s = min(63, max(0, np.int32(np.rint(inv_scale * scales[j, l]))))
            m = min(63, max(0, np.int32(np.rint(inv_min * minimums[j, l]))))
            out[base + 4 * GROUP + j * GROUP + l] = np.uint8((s & 15) | ((m & 15) << 4))
            out[base + 12 * GROUP + 4 * l + j // 2] |= np.uint8(((s >> 4) | ((m >> 4) << 2)) << (4 * (j % 2)))
            d, dm = big_d * np.float32(s), big_m * np.float32(m)
            first = base + (codes_offset(Q4_K, j) - super_offset(Q4_K, 0))
            for e in range(BLOCK):
                n = 0                         # d == 0: the value is -dm whatever n is
                if d != 0:
                    n = min(15, max(0, np.int32(np.rint((X[j * BLOCK + e, l] + dm) / d))))
                out[first + _code_offset(Q4_1, l, e)] |= np.uint8(n << 4) if e >= 16 else np.uint8(n)


@njit(**EXACT)
def _pack_super_group(W, g, out):
    """Q4_K: rows of group g of W into ``out`` (the group's bytes); returns how many blocks held NaN or Inf."""
    rows, k = W.shape
    X = np.zeros((SUPER * BLOCK, GROUP), np.float32)
    fits = np.zeros((6, SUPER, GROUP), np.float32)
    work = (np.zeros((BLOCK, GROUP), np.float32),
            (fits[0], fits[1], fits[2, 0], fits[3, 0], fits[4, 0], fits[5, 0]), np.zeros((12, GROUP), np.float32))
    bad = 0
    for first in range(0, k // BLOCK, SUPER):
        blocks = min(SUPER, k // BLOCK - first)
        X[:] = 0
        for l in range(min(GROUP, rows - g * GROUP)):
            r = g * GROUP + l
            for e in range(blocks * BLOCK):
                X[e, l] = widen(W[r, first * BLOCK + e])
            for b in range(blocks):
                finite = True
                for e in range(b * BLOCK, (b + 1) * BLOCK):
                    finite = finite and np.isfinite(X[e, l])
                if not finite:
                    bad += 1
                    X[b * BLOCK:(b + 1) * BLOCK, l] = 0
        _quantize_super(X, blocks, out, super_offset(Q4_K, first), work)
    return bad


@njit(**dict(PARALLEL, fastmath=False))
def pack_rows(fmt, W, out):
    """Quantize rows ``W`` (fp16/bf16 bits or float32, a whole number of groups or the matrix's end) into
    ``out`` (uint8 [groups, bytes per group], zeroed); returns how many blocks held NaN or Inf."""
    rows, k = W.shape
    per_block = block_bytes(fmt)
    bad = np.zeros(rows, np.int64)
    if fmt == Q4_K:   # a group of rows at a time: its rows are the vector lanes of the fit
        groups = (rows + GROUP - 1) // GROUP
        for g in prange(groups):
            bad[g] += _pack_super_group(W, g, out[g])
        return bad.sum()
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
    per_block = block_bytes(fmt)
    for i in range(r1 - r0):
        r = r0 + i
        group, lane = P[r // GROUP], r % GROUP
        for b in range(k // BLOCK):
            base = b * per_block
            if fmt == Q4_K:
                sb, j = super_offset(fmt, b), b % SUPER
                low = np.int32(group[sb + 4 * GROUP + j * GROUP + lane])
                high = np.int32(group[sb + 12 * GROUP + 4 * lane + j // 2]) >> (4 * (j % 2))
                d = _half(group, sb + 2 * lane) * np.float32((low & 15) | ((high & 3) << 4))
                m = -(_half(group, sb + 2 * GROUP + 2 * lane) * np.float32((low >> 4) | (((high >> 2) & 3) << 4)))
            else:
                d = _half(group, base + 2 * lane)
                m = _half(group, base + 2 * GROUP + 2 * lane) if fmt == Q4_1 else np.float32(0.0)
            for e in range(BLOCK):
                byte = np.int32(group[codes_offset(fmt, b) + _code_offset(fmt, lane, e)])
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
