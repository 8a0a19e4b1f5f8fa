"""Weight matrix times a block of token activations: prefill and batched decoding, in every weight format.

``matmul(W, S, X, act, out)``: out[t, r] = W[r] . X[t] for all T tokens. The
work is split into (token block, row step) pieces, token block first, so each
thread keeps a block's activations in its cache while it streams the weights;
inside a piece the tokens go through the widest tile this CPU's registers
hold (``dot_wide``, ``dot_quant``), the rest in tiles of half that, two, then one
token (a decode step of 4 streams is one 4-token tile: its weights widened once,
not once per token, which made it cost 1.5 one-token steps). Every tile
computes each output exactly as the one-token kernel does, so prefill and a
batch of tokens give the very logits decoding them one by one gives. Packed
formats quantize the block's activations to 8 bits first (as decoding does).
"""

from __future__ import annotations

from numba import njit, prange, types

from .dot_quant import GROUP, Q4_0, Q4_1, Q4_K, Q8, quant_tile
from .dot_wide import wide_tile
from .jit import KERNEL, PARALLEL, by_element_type
from .llvm_ir import LANES
from .matvec import PIECE, ROWS, row_unit
from .quant_formats import quantize_activations

# Tokens per tile: the accumulators (ROWS x tokens vectors, or one per token for a packed group) must
# stay in registers: 32 vector registers with AVX-512, 16 otherwise.
WIDE_TOKENS = 6 if LANES == 16 else 3
QUANT_TOKENS = 8 if LANES == 16 else 4
# The tiles for the tokens a block's widest tiles leave over (a decode step of a few streams is all left over).
WIDE_MID, QUANT_MID = (4 if WIDE_TOKENS > 4 else 2), QUANT_TOKENS // 2
TOKEN_BLOCK = 48          # tokens whose activations one thread keeps in cache while the weights stream by
_wide_big, _wide_one = wide_tile(ROWS, WIDE_TOKENS), wide_tile(ROWS, 1)
_wide_mid, _wide_two = wide_tile(ROWS, WIDE_MID), wide_tile(ROWS, 2)
_wide_row = wide_tile(1, 1)
_q8_big, _q8_one = quant_tile(Q8, QUANT_TOKENS), quant_tile(Q8, 1)
_q4_0_big, _q4_0_one = quant_tile(Q4_0, QUANT_TOKENS), quant_tile(Q4_0, 1)
_q4_1_big, _q4_1_one = quant_tile(Q4_1, QUANT_TOKENS), quant_tile(Q4_1, 1)
_q8_mid, _q4_0_mid, _q4_1_mid = quant_tile(Q8, QUANT_MID), quant_tile(Q4_0, QUANT_MID), quant_tile(Q4_1, QUANT_MID)
_q8_two, _q4_0_two, _q4_1_two = quant_tile(Q8, 2), quant_tile(Q4_0, 2), quant_tile(Q4_1, 2)
_q4_k_big, _q4_k_mid = quant_tile(Q4_K, QUANT_TOKENS), quant_tile(Q4_K, QUANT_MID)
_q4_k_two, _q4_k_one = quant_tile(Q4_K, 2), quant_tile(Q4_K, 1)


def rows_block(W, S, X, act, out, r0, t0, t1):
    """The rows of one piece of work (``row_unit``) from r0, tokens t0..t1."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _wide_block(W, S, X, act, out, r0, t0, t1):
    """Rows r0..r0 + PIECE (or the matrix's end), a tile of ROWS at a time."""
    r1 = min(out.shape[1], r0 + PIECE)
    r = r0
    while r + ROWS <= r1:
        t = t0
        while t + WIDE_TOKENS <= t1:
            _wide_big(W, r, X, t, out)
            t += WIDE_TOKENS
        if t + WIDE_MID <= t1:
            _wide_mid(W, r, X, t, out)
            t += WIDE_MID
        while t + 2 <= t1:
            _wide_two(W, r, X, t, out)
            t += 2
        if t < t1:
            _wide_one(W, r, X, t, out)
        r += ROWS
    while r < r1:
        for t in range(t0, t1):
            _wide_row(W, r, X, t, out)
        r += 1


@njit(**KERNEL)
def _quant_block(W, S, X, act, out, r0, t0, t1):
    """Packed blocks; S holds (format, rows, k); r0 starts a group."""
    fmt, k, g = S[0], S[2], r0 // GROUP
    XQ, XD, XS = act[0][:, :k], act[1][:, :k // 32], act[2][:, :k // 32]
    t = t0
    while t + QUANT_TOKENS <= t1:
        if fmt == Q8:
            _q8_big(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_0:
            _q4_0_big(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_K:
            _q4_k_big(W, g, XQ, XD, XS, t, out)
        else:
            _q4_1_big(W, g, XQ, XD, XS, t, out)
        t += QUANT_TOKENS
    if t + QUANT_MID <= t1:
        if fmt == Q8:
            _q8_mid(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_0:
            _q4_0_mid(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_K:
            _q4_k_mid(W, g, XQ, XD, XS, t, out)
        else:
            _q4_1_mid(W, g, XQ, XD, XS, t, out)
        t += QUANT_MID
    while t + 2 <= t1:
        if fmt == Q8:
            _q8_two(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_0:
            _q4_0_two(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_K:
            _q4_k_two(W, g, XQ, XD, XS, t, out)
        else:
            _q4_1_two(W, g, XQ, XD, XS, t, out)
        t += 2
    while t < t1:
        if fmt == Q8:
            _q8_one(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_0:
            _q4_0_one(W, g, XQ, XD, XS, t, out)
        elif fmt == Q4_K:
            _q4_k_one(W, g, XQ, XD, XS, t, out)
        else:
            _q4_1_one(W, g, XQ, XD, XS, t, out)
        t += 1


by_element_type(rows_block, 0, {types.uint8: _quant_block}, _wide_block)


def prepare_inputs(W, X, act):
    """Quantize the rows of X into ``act`` (at least as wide and tall) when W is packed."""
    raise NotImplementedError  # compiled as the kernel for W's format (by_element_type, below)


@njit(**KERNEL)
def _quantize_inputs(W, X, act):
    quantize_activations(X, act[0], act[1], act[2])


@njit(**KERNEL)
def _inputs_as_is(W, X, act):
    pass


by_element_type(prepare_inputs, 0, {types.uint8: _quantize_inputs}, _inputs_as_is)


@njit(**KERNEL)
def matmul(W, S, X, act, out):
    """out[T, n] = X[T, k] @ W.T (act: room for X's 8-bit blocks, [T, >=k], [T, >=k/32] twice; filled here)."""
    prepare_inputs(W, X, act)
    matmul_prepared(W, S, X, act, out)


@njit(**PARALLEL)
def matmul_prepared(W, S, X, act, out):
    """``matmul`` with ``act`` already holding X's 8-bit blocks (several matrices share one input)."""
    tokens, n, unit = X.shape[0], out.shape[1], row_unit(W)
    steps = (n + unit - 1) // unit
    blocks = (tokens + TOKEN_BLOCK - 1) // TOKEN_BLOCK
    for piece in prange(blocks * steps):
        b, s = piece // steps, piece % steps
        rows_block(W, S, X, act, out, s * unit, b * TOKEN_BLOCK, min(tokens, b * TOKEN_BLOCK + TOKEN_BLOCK))
