"""Matrix-vector products over stored weights: one kernel per format, chosen by the array's type.

Decoding reads every weight once per token, so these decide the speed. Each
kernel walks four rows at a time and shares every ``x[j]`` among them; the
2-byte and float32 rows go through ``dot_wide``'s LLVM vector code, the same
for fp16 and bf16 but for the one widening instruction.
Formats:
  * 2-byte (fp16 as uint16, bf16 as int16) and float32: ``W[n, k]``, or packed 4 rows
    side by side (3-D, ``dot_wide.pack_rows``);
  * packed 8-bit and 4-bit blocks (``quant_formats``): ``W`` uint8 [groups,
    bytes], ``S`` int64 (format, rows, k). The input vector is quantized to
    8-bit blocks first (``prepare_input``), so the inner loop is integer
    (``dot_quant``), as in llama.cpp.
Every kernel takes (x, act): the float32 input and its 8-bit blocks
(XQ, XD, XS); each format reads what it needs. ``matvec_rows`` is what the fused layer step calls;
``matvec`` is a parallel product on its own (the vocabulary projection).
"""

from __future__ import annotations

from numba import njit, prange, types

from .dot_quant import GROUP, Q4_0, Q4_1, Q4_K, Q8, quant_tile
from .dot_wide import PACK_ROWS, wide_tile
from .jit import KERNEL, PARALLEL, by_element_type, widen
from .quant_formats import quantize_activations, unpack_rows

ROWS = PACK_ROWS  # rows per tile for the 2-byte and float32 formats (packed formats: one group)
PIECE = 8 * ROWS  # rows per piece of parallel work for those formats: a thread's next piece follows on in memory
_tile4, _tile1 = wide_tile(ROWS, 1), wide_tile(1, 1)
_q8, _q4_0, _q4_1, _q4_k = quant_tile(Q8, 1), quant_tile(Q4_0, 1), quant_tile(Q4_1, 1), quant_tile(Q4_K, 1)


def row_unit(W):
    """Rows one piece of parallel work computes: PIECE, or a packed format's group."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


def matvec_rows(W, S, x, act, out, r0, r1):
    """out[r] = W[r] . x for r in r0..r1 (r0 a multiple of ``row_unit(W)``; r1 too, or the matrix's end)."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


def prepare_input(W, x, act):
    """Quantize ``x`` into ``act`` = (XQ, XD, XS) when ``W`` is packed; nothing for the other formats."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _rows_unit(W):
    return PIECE


@njit(**KERNEL)
def _group_unit(W):
    return GROUP


@njit(**KERNEL)
def _wide_rows(W, S, x, act, out, r0, r1):
    X, O = x.reshape(1, x.size), out.reshape(1, out.size)
    r = r0
    while r + ROWS <= r1:
        _tile4(W, r, X, 0, O)
        r += ROWS
    while r < r1:
        _tile1(W, r, X, 0, O)
        r += 1


@njit(**KERNEL)
def _quant_rows(W, S, x, act, out, r0, r1):
    """Packed blocks; S holds (format, rows, k)."""
    fmt, k = S[0], S[2]
    XQ, XD, XS = act[0][:, :k], act[1][:, :k // 32], act[2][:, :k // 32]
    O = out.reshape(1, out.size)
    for g in range(r0 // GROUP, (r1 + GROUP - 1) // GROUP):
        if fmt == Q8:
            _q8(W, g, XQ, XD, XS, 0, O)
        elif fmt == Q4_0:
            _q4_0(W, g, XQ, XD, XS, 0, O)
        elif fmt == Q4_K:
            _q4_k(W, g, XQ, XD, XS, 0, O)
        else:
            _q4_1(W, g, XQ, XD, XS, 0, O)


@njit(**KERNEL)
def _quantize_input(W, x, act):
    k, nb = x.size, x.size // 32
    quantize_activations(x.reshape(1, k), act[0][:, :k], act[1][:, :nb], act[2][:, :nb])


@njit(**KERNEL)
def _input_as_is(W, x, act):
    pass


by_element_type(row_unit, 0, {types.uint8: _group_unit}, _rows_unit)
by_element_type(matvec_rows, 0, {types.uint8: _quant_rows}, _wide_rows)
by_element_type(prepare_input, 0, {types.uint8: _quantize_input}, _input_as_is)


@njit(**PARALLEL)
def matvec(W, S, x, act, out):
    """out = W @ x over all rows, split across threads a kernel step at a time (act: scratch)."""
    prepare_input(W, x, act)
    n, unit = out.size, row_unit(W)
    steps = (n + unit - 1) // unit
    for t in prange(steps):
        matvec_rows(W, S, x, act, out, t * unit, min(n, t * unit + unit))


def widen_rows(W, S, r0, r1, out):
    """out[i] = float32 row r0 + i of W (dequantized for packed formats): a tile for a BLAS matrix product."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _widen_wide(W, S, r0, r1, out):
    k = W.shape[1]
    for i in range(r1 - r0):
        row, dest = W[r0 + i], out[i]
        for j in range(k):
            dest[j] = widen(row[j])


@njit(**KERNEL)
def _unpack(W, S, r0, r1, out):
    unpack_rows(S[0], W, r0, r1, S[2], out)


by_element_type(widen_rows, 0, {types.uint8: _unpack}, _widen_wide)


@njit(**KERNEL)
def widen_tile(W, S, r0, r1, out):
    """Callable from Python: ``widen_rows`` into ``out[:r1 - r0]``."""
    widen_rows(W, S, r0, r1, out)
