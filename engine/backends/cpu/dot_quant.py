"""Products of 8-bit and 4-bit weight blocks with 8-bit activation blocks: integer inner loop, in LLVM vector code.

The weights are laid out "rows in lanes" (``quant_formats``): a group of
``LANES`` rows is stored block by block, and within a block four consecutive
bytes of each row sit side by side, so one vector holds four weights of every
row of the group. The activations are 8-bit blocks of 32 with a float scale
and their integer sum (llama.cpp's Q8_1). Per block and token, four activation
bytes are broadcast to every lane and multiplied into the row lanes with one
byte dot product (AVX-512/AVX-VNNI ``vpdpbusd``; ``pmaddubsw`` + ``pmaddwd``
on AVX2; portable vector IR elsewhere), then the integer sums are scaled by
(weight scale x activation scale) into one float accumulator per row: no
horizontal sums, and every row's sum runs over its blocks in the same order
whatever the tile, so a token's result does not depend on the tokens beside it.

Formats (weight = value of the block's stored integers):
  * ``Q8``: q in -127..127 stored as q + 128 (unsigned); weight = d * q.
  * ``Q4_0``: 4-bit n stored as n (0..15); weight = d * (n - 8).
  * ``Q4_1``: 4-bit n; weight = d * n + m.
  * ``Q4_K``: 4-bit n in super-blocks of 8 blocks (256 weights) sharing one fp16 pair (D, M); each block has
    6-bit integers s and m (llama.cpp's Q4_K): weight = (D * s) * n - (M * m). 4.5 bits a weight, Q4_0's bytes,
    with Q4_1's minimum. A super-block of a group starts with ``SUPER_HEAD`` bytes: D and M (fp16, one per
    row), then per block one byte per row (s & 15 | (m & 15) << 4), then one 32-bit word per row holding the
    high two bits of every block's s and m (bits 4j, 4j + 2); then the blocks' codes as in Q4_0/Q4_1. A row
    whose length is not a multiple of 256 ends in a shorter super-block (same head, fewer blocks). The block's
    effective scale D * s and minimum M * m are exact in float32 (11-bit mantissa times 6 bits), so the
    kernel is Q4_1's with those two computed per block.
The offsets are exact integer corrections: sum(n * x) - 8 * sum(x) for Q4_0 and
sum((q + 128) * x) - 128 * sum(x) for Q8 on the unsigned-byte instructions (the
signed ones on AVX2 and elsewhere take q directly); Q4_1's minimum adds
m * d_x * sum(x) per block.
"""

from __future__ import annotations

from functools import lru_cache

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .jit import KERNEL

from .llvm_ir import (F16, F32, I8, I16, I32, ISA, LANES, Loop, array_parts, byte_pointer, call_intrinsic, const,
                      fence, fmuladd, i64, shuffle, splat, vec)

BLOCK = 32
Q8, Q4_0, Q4_1, Q4_K = 3, 4, 5, 6   # format codes (1-2 are the 2-byte formats, 0 float32)
GROUP = LANES                       # rows per group: one per float32 lane
SUPER = 8                           # Q4_K: blocks per super-block
SUPER_HEAD = 16 * GROUP             # Q4_K: D and M (2 x 2 bytes), low bits (8 x 1), high bits (4) per row
CODES = GROUP * BLOCK // 2          # bytes of one 4-bit block's codes of a group
SUPER_BYTES = SUPER_HEAD + SUPER * CODES


@njit(**KERNEL)
def header_bytes(fmt: int) -> int:
    """fp16 scales (and Q4_1's minimums) of one block of a group (Q4_K: none, its super-block has them)."""
    if fmt == Q4_K:
        return 0
    return 2 * GROUP * (2 if fmt == Q4_1 else 1)


@njit(**KERNEL)
def block_bytes(fmt: int) -> int:
    """Bytes of one block (32 weights) of one group of rows (Q4_K: its codes; the head is the super-block's)."""
    return header_bytes(fmt) + GROUP * (BLOCK if fmt == Q8 else BLOCK // 2)


@njit(**KERNEL)
def group_bytes(fmt: int, k: int) -> int:
    """Bytes of one group of rows of length k."""
    blocks = k // BLOCK
    if fmt == Q4_K:
        supers = (blocks + SUPER - 1) // SUPER
        return supers * SUPER_HEAD + blocks * block_bytes(fmt)
    return blocks * block_bytes(fmt)


@njit(**KERNEL)
def codes_offset(fmt: int, b: int) -> int:
    """Where block b's codes start in a group's bytes."""
    if fmt == Q4_K:
        return super_offset(fmt, b) + SUPER_HEAD + (b % SUPER) * block_bytes(fmt)
    return b * block_bytes(fmt) + header_bytes(fmt)


@njit(**KERNEL)
def super_offset(fmt: int, b: int) -> int:
    """Q4_K: where the super-block holding block b starts in a group's bytes."""
    return (b // SUPER) * SUPER_BYTES


# -- four-byte dot products per lane ---------------------------------------------------------------

_UNSIGNED_BYTES = ISA in ("avx512", "avxvnni")   # vpdpbusd: unsigned weight bytes x signed activations


def _dot4(builder, acc, w, x, signed_w: bool):
    """acc[l] + sum of the 4 products w[4l + i] * x[4l + i]; w unsigned bytes (signed when ``signed_w``)."""
    n = acc.type.count
    if ISA in ("avx512", "avxvnni") and not signed_w:
        name = "llvm.x86.avx512.vpdpbusd.512" if n == 16 else "llvm.x86.avx512.vpdpbusd.256"
        as_i32 = vec(I32, n)
        return call_intrinsic(builder, name, as_i32, [acc, builder.bitcast(w, as_i32), builder.bitcast(x, as_i32)])
    if ISA in ("avx512", "avxvnni", "avx2") and n == 8:
        if signed_w:  # |x| times w with x's sign: products stay within pmaddubsw's 16 bits
            w = call_intrinsic(builder, "llvm.x86.avx2.psign.b", w.type, [w, x])
            x = call_intrinsic(builder, "llvm.abs.v32i8", x.type, [x, const(ir.IntType(1), 0)])
            w, x = x, w
        pairs = call_intrinsic(builder, "llvm.x86.avx2.pmadd.ub.sw", vec(I16, 16), [w, x])
        quads = call_intrinsic(builder, "llvm.x86.avx2.pmadd.wd", vec(I32, 8),
                               [pairs, const(vec(I16, 16), [1] * 16)])
        return builder.add(acc, quads)
    wide = builder.sext(w, vec(I32, 4 * n)) if signed_w else builder.zext(w, vec(I32, 4 * n))
    products = builder.mul(wide, builder.sext(x, vec(I32, 4 * n)))
    quads = [shuffle(builder, products, range(i, 4 * n, 4)) for i in range(4)]
    return builder.add(acc, builder.add(builder.add(quads[0], quads[1]), builder.add(quads[2], quads[3])))


def _broadcast_x(builder, xq_row, offset, element):
    """Four activations at ``offset`` (8- or 16-bit), repeated in every lane, as a vector of that type."""
    four_type = I32 if element == I8 else ir.IntType(64)
    four = builder.load(builder.bitcast(builder.gep(xq_row, [offset]), four_type.as_pointer()), align=1)
    return builder.bitcast(splat(builder, four, GROUP), vec(element, 4 * GROUP))


def _dot4_wide(builder, acc, w, x, signed_w: bool):
    """``_dot4`` with 16-bit activations: products of 16-bit lanes added in pairs (``pmaddwd``), then pairs."""
    n = acc.type.count
    wide = builder.sext(w, vec(I32, 4 * n)) if signed_w else builder.zext(w, vec(I32, 4 * n))
    products = builder.mul(wide, builder.sext(x, vec(I32, 4 * n)))
    pairs = builder.add(shuffle(builder, products, range(0, 4 * n, 2)), shuffle(builder, products, range(1, 4 * n, 2)))
    return builder.add(acc, builder.add(shuffle(builder, pairs, range(0, 2 * n, 2)),
                                        shuffle(builder, pairs, range(1, 2 * n, 2))))


# 16-bit activations (the built-in model's) on x86: two weights per 32-bit lane against two activations, summed by
# one instruction (AVX-512/AVX-VNNI ``vpdpwssd``, AVX2 ``pmaddwd``). ``_dot4_wide`` spells the same sums as 32-bit
# multiplies and lane shuffles per token, which made the integer work, not the weights, a step's cost.
_WORD_PAIRS = ISA in ("avx512", "avxvnni", "avx2")


def _word_halves(builder, w, signed_w: bool):
    """A piece's four weights of each row as 16-bit words, in two vectors of half the group's rows each:
    32-bit lane 2r + j of a half holds row r's weights 2j and 2j + 1."""
    words = builder.sext(w, vec(I16, 4 * GROUP)) if signed_w else builder.zext(w, vec(I16, 4 * GROUP))
    return [builder.bitcast(shuffle(builder, words, range(h * 2 * GROUP, (h + 1) * 2 * GROUP)), vec(I32, GROUP))
            for h in (0, 1)]


def _broadcast_words(builder, xq_row, offset):
    """Four 16-bit activations at ``offset``, repeated for half a group's rows: 32-bit lane 2r + j holds 2j, 2j + 1."""
    four = builder.load(builder.bitcast(builder.gep(xq_row, [offset]), ir.IntType(64).as_pointer()), align=1)
    return builder.bitcast(splat(builder, four, GROUP // 2), vec(I32, GROUP))


def _dot_pairs(builder, acc, w, x):
    """acc[l] + w.words[2l] * x.words[2l] + w.words[2l + 1] * x.words[2l + 1] (exact in 32 bits here)."""
    if ISA in ("avx512", "avxvnni"):
        name = "llvm.x86.avx512.vpdpwssd.512" if GROUP == 16 else "llvm.x86.avx512.vpdpwssd.256"
        return call_intrinsic(builder, name, acc.type, [acc, w, x])
    words = vec(I16, 2 * GROUP)
    pairs = call_intrinsic(builder, "llvm.x86.avx2.pmadd.wd", acc.type,
                           [builder.bitcast(w, words), builder.bitcast(x, words)])
    return builder.add(acc, pairs)


def _super_block_scales(builder, sb, j):
    """Q4_K: block j's (D * s, -(M * m)) per row, from the super-block at byte pointer ``sb``."""
    floats, ints = vec(F32, GROUP), vec(I32, GROUP)

    def load(offset, t):
        return builder.load(builder.bitcast(builder.gep(sb, [offset]), t.as_pointer()), align=1)

    big_d = builder.fpext(load(i64(0), vec(F16, GROUP)), floats)
    big_m = builder.fpext(load(i64(2 * GROUP), vec(F16, GROUP)), floats)
    low = builder.zext(load(builder.add(i64(4 * GROUP), builder.mul(j, i64(GROUP))), vec(I8, GROUP)), ints)
    high = builder.lshr(load(i64(12 * GROUP), ints), splat(builder, builder.trunc(builder.mul(j, i64(4)), I32), GROUP))

    def ints_of(value):
        return const(ints, [value] * GROUP)

    s = builder.or_(builder.and_(low, ints_of(15)), builder.shl(builder.and_(high, ints_of(3)), ints_of(4)))
    m = builder.or_(builder.lshr(low, ints_of(4)),
                    builder.shl(builder.and_(builder.lshr(high, ints_of(2)), ints_of(3)), ints_of(4)))
    d_w = builder.fmul(big_d, builder.sitofp(s, floats))
    m_w = builder.fmul(builder.fmul(big_m, builder.sitofp(m, floats)), const(floats, [-1.0] * GROUP))
    return fence(builder, d_w), fence(builder, m_w)   # exact products, used as Q4_1's loaded scale and minimum


def _store_lanes(builder, values, o_row, first, limit):
    """out[first + l] = values[l] for the lanes l < limit (a group past the matrix's last row is cut)."""
    full = builder.icmp_signed(">=", limit, i64(GROUP))
    with builder.if_else(full) as (then, otherwise):
        with then:
            builder.store(values, builder.bitcast(builder.gep(o_row, [first]), values.type.as_pointer()), align=4)
        with otherwise:
            for lane in range(GROUP):
                with builder.if_then(builder.icmp_signed(">", limit, i64(lane))):
                    builder.store(builder.extract_element(values, i64(lane)),
                                  builder.gep(o_row, [builder.add(first, i64(lane))]))


@lru_cache(maxsize=None)
def quant_tile(fmt: int, tokens: int):
    """The intrinsic ``tile(W, g, XQ, XD, XS, t0, out)``: rows of group ``g`` against ``tokens`` activations.

    W uint8 [groups, group_bytes]; XQ int8 [T, k] (or int16: 16-bit
    activation blocks, for small models whose answers 8-bit rounding would
    change); XD float32 [T, k/32] (activation scales); XS int32 [T, k/32]
    (activation block sums); out float32 [T, n]: out[t0 + t, g * GROUP + l]
    for the group's real rows.
    """
    head, per_block = header_bytes(fmt), block_bytes(fmt)

    @intrinsic
    def tile(typingctx, W, g, XQ, XD, XS, t0, out):
        if not (isinstance(W, types.Array) and W.dtype == types.uint8 and XQ.dtype in (types.int8, types.int16)):
            return None
        element = I8 if XQ.dtype == types.int8 else I16
        signed_w = fmt == Q8 and (element == I16 or not _UNSIGNED_BYTES)
        offset = {Q8: 0 if signed_w else -128, Q4_0: -8, Q4_1: 0, Q4_K: 0}[fmt]
        dot4 = _dot4 if element == I8 else _dot4_wide

        def codegen(context, builder, signature, args):
            w_data, _, w_strides = array_parts(context, builder, signature.args[0], args[0])
            xq_data, xq_shape, xq_strides = array_parts(context, builder, signature.args[2], args[2])
            xd_data, _, xd_strides = array_parts(context, builder, signature.args[3], args[3])
            xs_data, _, xs_strides = array_parts(context, builder, signature.args[4], args[4])
            o_data, o_shape, o_strides = array_parts(context, builder, signature.args[6], args[6])
            group, t0 = args[1], args[5]
            blocks = builder.sdiv(xq_shape[1], i64(BLOCK))
            w_row = builder.gep(byte_pointer(builder, w_data), [builder.mul(group, w_strides[0])])

            def row_of(data, strides, t, elem):
                at = builder.gep(byte_pointer(builder, data), [builder.mul(builder.add(t0, i64(t)), strides[0])])
                return builder.bitcast(at, elem.as_pointer())

            xq_rows = [row_of(xq_data, xq_strides, t, element) for t in range(tokens)]
            xd_rows = [row_of(xd_data, xd_strides, t, F32) for t in range(tokens)]
            xs_rows = [row_of(xs_data, xs_strides, t, I32) for t in range(tokens)]
            floats = vec(F32, GROUP)
            loop = Loop(builder, "quant_blocks", i64(0), blocks, [const(floats, None)] * tokens)
            b = loop.index
            if fmt == Q4_K:
                j = builder.and_(b, i64(SUPER - 1))
                sb = builder.gep(w_row, [builder.mul(builder.sdiv(b, i64(SUPER)), i64(SUPER_BYTES))])
                d_w, m_w = _super_block_scales(builder, sb, j)
                codes = builder.gep(sb, [builder.add(i64(SUPER_HEAD), builder.mul(j, i64(per_block)))])
            else:
                blk = builder.gep(w_row, [builder.mul(b, i64(per_block))])
                codes = builder.gep(blk, [i64(head)])

            def load_at(base, offset_bytes, t):
                return builder.load(builder.bitcast(builder.gep(base, [i64(offset_bytes)]), t.as_pointer()), align=1)

            if fmt != Q4_K:
                d_w = builder.fpext(load_at(blk, 0, vec(F16, GROUP)), floats)
                m_w = builder.fpext(load_at(blk, 2 * GROUP, vec(F16, GROUP)), floats) if fmt == Q4_1 else None
            if fmt == Q8:
                weights = [load_at(codes, c * 4 * GROUP, vec(I8, 4 * GROUP)) for c in range(8)]
                if signed_w:  # q + 128 -> q
                    flip = const(vec(I8, 4 * GROUP), [-128] * (4 * GROUP))
                    weights = [builder.xor(w, flip) for w in weights]
                pieces = [(weights[c], 4 * c) for c in range(8)]
            else:
                low = const(vec(I8, 4 * GROUP), [15] * (4 * GROUP))
                four = const(vec(I8, 4 * GROUP), [4] * (4 * GROUP))
                packed = [load_at(codes, c * 4 * GROUP, vec(I8, 4 * GROUP)) for c in range(4)]
                pieces = [(builder.and_(p, low), 4 * c) for c, p in enumerate(packed)]
                pieces += [(builder.lshr(p, four), 16 + 4 * c) for c, p in enumerate(packed)]
            accs = list(loop.values)
            x_first = builder.mul(b, i64(BLOCK))
            pairs = element == I16 and _WORD_PAIRS
            halves = [(_word_halves(builder, w, signed_w), at) for w, at in pieces] if pairs else []
            for t in range(tokens):
                sums = const(vec(I32, GROUP), None)
                x_sum = builder.load(builder.gep(xs_rows[t], [b]))
                if offset:
                    sums = splat(builder, builder.mul(x_sum, const(I32, offset)), GROUP)
                if pairs:   # two partial sums per row, lanes 2r and 2r + 1 of the halves, added once per block
                    lo = hi = const(vec(I32, GROUP), None)
                    for (w_lo, w_hi), at in halves:
                        x = _broadcast_words(builder, xq_rows[t], builder.add(x_first, i64(at)))
                        lo, hi = _dot_pairs(builder, lo, w_lo, x), _dot_pairs(builder, hi, w_hi, x)
                    sums = builder.add(sums, builder.add(shuffle(builder, lo, range(0, 2 * GROUP, 2), hi),
                                                         shuffle(builder, lo, range(1, 2 * GROUP, 2), hi)))
                for w, at in ([] if pairs else pieces):
                    x = _broadcast_x(builder, xq_rows[t], builder.add(x_first, i64(at)), element)
                    sums = dot4(builder, sums, w, x, signed_w)
                d_x = builder.load(builder.gep(xd_rows[t], [b]))
                scale = builder.fmul(d_w, splat(builder, d_x, GROUP))
                accs[t] = fmuladd(builder, builder.sitofp(sums, floats), scale, accs[t])
                if m_w is not None:
                    s_x = builder.fmul(builder.sitofp(x_sum, F32), d_x)
                    accs[t] = fmuladd(builder, m_w, splat(builder, s_x, GROUP), accs[t])
            accs = loop.close(accs)
            first = builder.mul(group, i64(GROUP))
            limit = builder.sub(o_shape[1], first)
            for t in range(tokens):
                _store_lanes(builder, accs[t], row_of(o_data, o_strides, t, F32), first, limit)
            return context.get_dummy_value()

        return types.none(W, types.int64, XQ, XD, XS, types.int64, out), codegen

    return tile
