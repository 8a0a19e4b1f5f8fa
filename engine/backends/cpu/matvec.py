"""Matrix-vector products over stored weights: one kernel per format, chosen by the array's type.

Decoding reads every weight once per token, so these decide the speed. Each
kernel walks four rows at a time and shares every ``x[j]`` among them, with a
long contiguous inner loop that LLVM vectorizes (the widening cast included).
Formats:
  * 2-byte (fp16 as uint16, bf16 as int16) and float32: ``W[n, k]``;
  * ``int8`` blocks (Q8_0-like): ``W[n, k]`` int8 plus ``S[n, k // 32]`` float32
    scales; a row's value is ``S[r, j // 32] * W[r, j]``. The input vector is
    quantized the same way first (``prepare_input``), so the inner loop is
    integer (``int8_dot``), as in llama.cpp's Q8_0.
Every kernel takes (x, xq, xs): the float32 input and its 8-bit blocks; each
format reads what it needs. ``matvec_rows`` is what the fused layer step calls;
``matvec`` is a parallel product on its own (the vocabulary projection).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from .int8_dot import BLOCK, int8_rows1, int8_rows4, quantize_activation
from .jit import KERNEL, PARALLEL, by_element_type, widen

ROWS = 4     # rows per kernel step


def matvec_rows(W, S, x, xq, xs, out, r0, r1):
    """out[r] = W[r] . x for r in r0..r1 (r1 - r0 a multiple of ROWS, or the matrix's end)."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


def prepare_input(W, x, xq, xs):
    """Quantize ``x`` into (xq, xs) when ``W`` is int8; nothing for the other formats."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _wide_rows(W, S, x, xq, xs, out, r0, r1):
    k = W.shape[1]
    r = r0
    while r + ROWS <= r1:
        w0, w1, w2, w3 = W[r], W[r + 1], W[r + 2], W[r + 3]
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for j in range(k):
            xj = x[j]
            a0 += widen(w0[j]) * xj
            a1 += widen(w1[j]) * xj
            a2 += widen(w2[j]) * xj
            a3 += widen(w3[j]) * xj
        out[r], out[r + 1], out[r + 2], out[r + 3] = a0, a1, a2, a3
        r += ROWS
    while r < r1:
        w0 = W[r]
        a0 = np.float32(0.0)
        for j in range(k):
            a0 += widen(w0[j]) * x[j]
        out[r] = a0
        r += 1


@njit(**KERNEL)
def _int8_rows(W, S, x, xq, xs, out, r0, r1):
    r = r0
    while r + ROWS <= r1:
        int8_rows4(W, r, xq, S, xs, out)
        r += ROWS
    while r < r1:
        int8_rows1(W, r, xq, S, xs, out)
        r += 1


@njit(**KERNEL)
def _quantize_input(W, x, xq, xs):
    quantize_activation(x, xq, xs)


@njit(**KERNEL)
def _input_as_is(W, x, xq, xs):
    pass


by_element_type(matvec_rows, 0, {types.int8: _int8_rows}, _wide_rows)
by_element_type(prepare_input, 0, {types.int8: _quantize_input}, _input_as_is)


@njit(**PARALLEL)
def matvec(W, S, x, xq, xs, out):
    """out = W @ x over all rows, split across threads in steps of ROWS rows (xq, xs: scratch)."""
    prepare_input(W, x, xq, xs)
    n = W.shape[0]
    steps = (n + ROWS - 1) // ROWS
    for t in prange(steps):
        matvec_rows(W, S, x, xq, xs, out, t * ROWS, min(n, t * ROWS + ROWS))


def widen_rows(W, S, r0, r1, out):
    """out[i] = float32 row r0 + i of W (dequantized for int8): a tile for a BLAS matrix product."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _widen_wide(W, S, r0, r1, out):
    k = W.shape[1]
    for i in range(r1 - r0):
        row, dest = W[r0 + i], out[i]
        for j in range(k):
            dest[j] = widen(row[j])


@njit(**KERNEL)
def _widen_int8(W, S, r0, r1, out):
    k = W.shape[1]
    for i in range(r1 - r0):
        row, dest = W[r0 + i], out[i]
        for b in range(k // BLOCK):
            scale = S[r0 + i, b]
            for j in range(b * BLOCK, b * BLOCK + BLOCK):
                dest[j] = np.float32(row[j]) * scale


by_element_type(widen_rows, 0, {types.int8: _widen_int8}, _widen_wide)


@njit(**KERNEL)
def widen_tile(W, S, r0, r1, out):
    """Callable from Python: ``widen_rows`` into ``out[:r1 - r0]``."""
    widen_rows(W, S, r0, r1, out)
