"""Products of stored 2-byte (fp16, bf16) or float32 weight rows with float32 activations, in LLVM vector code.

One routine computes a tile: ``rows`` consecutive weight rows against
``tokens`` activation rows, ``out[t0 + t, r0 + i] = W[r0 + i] . X[t0 + t]``.
Each weight vector is widened to float32 once and used for every token, each
activation vector once for every row, so a tile reads its weights once however
many tokens it serves: decoding one token is the 4 x 1 tile (memory-bound),
prefill and batched decoding use wider ones (compute-bound).

Every output has its own accumulator of ``LANES`` floats, walked along k in
the same order, then summed by ``horizontal_sum``, then the last k % LANES
products are added one by one. So a result is bit-identical whatever tile it
was computed in: a token decoded alone and the same token inside a batch or a
prefill block get the same logits (batch invariance). Widening: fp16 by
``fpext half`` (``vcvtph2ps``), bf16 by a 16-bit shift, float32 as is.

Weights come row by row (``W[n, k]``, as stored) or packed (``W[n / PACK_ROWS,
k / LANES, PACK_ROWS * LANES]``, ``pack_rows``): each LANES-wide chunk of a
tile's PACK_ROWS rows side by side, so the tile reads one sequential stream
instead of PACK_ROWS row streams a page apart. The same products in the same
order: packed or not, every result is bit-identical.
"""

from __future__ import annotations

from functools import lru_cache

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .llvm_ir import (F16, F32, I16, I32, LANES, Loop, array_parts, byte_pointer, const, fmuladd,
                      horizontal_sum, i64, load_vector, prefetch, vec)

_ELEMENT = {types.uint16: "fp16", types.int16: "bf16", types.float32: "f32"}
UNROLL = 4  # chunks of LANES per loop trip: more loads in flight per row
# Each weight row of a tile is prefetched from the next tile: at column j of rows r..r+R-1, the cache lines at
# column j of rows r+R..r+2R-1 are asked for, into L2 (``prefetcht1``). A thread's rows are contiguous, so this
# turns R short row streams (a 2048-wide fp16 row is one 4 KiB page, where the hardware prefetcher starts cold
# again) into one stream read a tile ahead. Measured on the 0.85B and 8B matrix shapes, 1 token, 2 threads, best
# of 5 rounds in turns: 1.30-1.57x the GB/s of prefetching 1 KiB ahead in the same row into L1 (the previous way,
# itself slower than no prefetch at all), and 1.14-1.25x no prefetch.
PREFETCH_NEXT_TILE = True
_L2 = 2   # llvm.prefetch locality: 3 = all levels (prefetcht0), 2 = L2 and out (prefetcht1)
_BYTES = {"fp16": 2, "bf16": 2, "f32": 4}
# A packed tile of several tokens (prefill, batched steps) prefetches the next group as it reads its own; a one-token
# tile does not. Same matrices, 2 threads, in turns, 2026-12-04: one token 1.02-1.09x the GB/s without the prefetch;
# 512 tokens 0.92-0.96x the row tile's GFLOP/s without it, 0.99-1.02x with it.
PACKED_AHEAD_TOKENS = 2
PACK_ROWS = 4  # rows side by side in a packed matrix: the decode tile's rows (``matvec.ROWS``)


def packable(shape) -> bool:
    """Whether a [rows, k] matrix can be packed: whole groups of rows, whole chunks of k."""
    rows, k = shape
    return rows % PACK_ROWS == 0 and k % LANES == 0


def pack_rows(W):
    """``W[n, k]`` packed: each LANES-wide chunk of PACK_ROWS consecutive rows side by side (see the module).

    Measured on 2 threads, one matrix after another of 5632 x 2048 to 14336 x 4096 fp16 (more than the caches
    hold), best of 15-20 in turns: 1.02-1.10x the GB/s of the same tile over rows as stored, whose PACK_ROWS
    streams, each restarting the hardware prefetcher at every 4 KiB page, are what the packed stream avoids."""
    import numpy as np

    n, k = W.shape
    grouped = W.reshape(n // PACK_ROWS, PACK_ROWS, k // LANES, LANES).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(grouped).reshape(n // PACK_ROWS, k // LANES, PACK_ROWS * LANES)


def _widen_vector(builder, kind, row_ptr, j, n, packed=False):
    """``n`` weights from element ``j`` of a row (of a packed row: chunk j // LANES), as a float32 vector."""
    if packed:
        j = builder.mul(j, i64(PACK_ROWS))
    if kind == "f32":
        return load_vector(builder, builder.bitcast(row_ptr, F32.as_pointer()), j, F32, n, align=4)
    bits = load_vector(builder, builder.bitcast(row_ptr, I16.as_pointer()), j, I16, n, align=2)
    if kind == "fp16":
        return builder.fpext(builder.bitcast(bits, vec(F16, n)), vec(F32, n))
    wide = builder.shl(builder.zext(bits, vec(I32, n)), ir.Constant(vec(I32, n), [16] * n))
    return builder.bitcast(wide, vec(F32, n))


def _widen_scalar(builder, kind, row_ptr, j):
    return builder.extract_element(_widen_vector(builder, kind, row_ptr, j, 1), i64(0))


@lru_cache(maxsize=None)
def wide_tile(rows: int, tokens: int, ahead: bool = PREFETCH_NEXT_TILE):
    """The intrinsic ``tile(W, r0, X, t0, out)`` for a ``rows`` x ``tokens`` tile (both compile-time).

    ``ahead``: prefetch the next tile's rows as this one is read (``PREFETCH_NEXT_TILE``); it changes no result.
    A packed ``W`` (3-D, ``pack_rows``) is one stream: a tile of PACKED_AHEAD_TOKENS or more prefetches the next
    group; a tile's rows never cross a group.
    """
    assert PACK_ROWS % rows == 0

    @intrinsic
    def tile(typingctx, W, r0, X, t0, out):
        if not (isinstance(W, types.Array) and W.ndim in (2, 3) and W.dtype in _ELEMENT
                and isinstance(X, types.Array) and X.dtype == types.float32):
            return None
        kind, packed = _ELEMENT[W.dtype], W.ndim == 3

        def codegen(context, builder, signature, args):
            w_data, w_shape, w_strides = array_parts(context, builder, signature.args[0], args[0])
            x_data, _, x_strides = array_parts(context, builder, signature.args[2], args[2])
            o_data, _, o_strides = array_parts(context, builder, signature.args[4], args[4])
            if packed:   # row r: group r // PACK_ROWS, its chunks at LANES * (r % PACK_ROWS) in each PACK_ROWS chunks
                k = builder.mul(w_shape[1], i64(LANES))
                group = builder.mul(builder.sdiv(args[1], i64(PACK_ROWS)), w_strides[0])
                first = builder.srem(args[1], i64(PACK_ROWS))
                w_rows = [builder.gep(byte_pointer(builder, w_data), [builder.add(group, builder.mul(
                    builder.add(first, i64(i)), i64(LANES * _BYTES[kind])))]) for i in range(rows)]
            else:
                k = w_shape[1]
                w_rows = [builder.gep(byte_pointer(builder, w_data),
                                      [builder.mul(builder.add(args[1], i64(i)), w_strides[0])]) for i in range(rows)]
            x_rows = [builder.bitcast(builder.gep(byte_pointer(builder, x_data),
                                                  [builder.mul(builder.add(args[3], i64(t)), x_strides[0])]),
                                      F32.as_pointer()) for t in range(tokens)]
            zero = const(vec(F32, LANES), None)
            accs = [zero] * (rows * tokens)
            # UNROLL chunks per trip, then single chunks: each output still takes its chunks in order
            end = i64(0)  # the unrolled loop's end: where the single chunks start
            for step, name in ((LANES * UNROLL, "wide_unrolled"), (LANES, "wide_main")):
                start = i64(0) if step != LANES else end
                end = builder.mul(builder.sdiv(k, i64(step)), i64(step))
                loop = Loop(builder, name, start, end, accs, step=step)
                accs = list(loop.values)
                if ahead and step != LANES and not packed:
                    size = _BYTES[kind]
                    next_tile = builder.mul(w_strides[0], i64(rows))    # the same column, ``rows`` rows on
                    at = builder.add(builder.mul(loop.index, i64(size)), next_tile)
                    for i in range(rows):
                        for line in range(0, step * size, 64):
                            prefetch(builder, builder.gep(w_rows[i], [builder.add(at, i64(line))]), locality=_L2)
                if ahead and step != LANES and packed and rows == PACK_ROWS and tokens >= PACKED_AHEAD_TOKENS:
                    size = _BYTES[kind] * PACK_ROWS   # the next group, at the same chunk: one stream read ahead
                    at = builder.add(builder.mul(loop.index, i64(size)), w_strides[0])
                    for line in range(0, step * size, 64):
                        prefetch(builder, builder.gep(w_rows[0], [builder.add(at, i64(line))]), locality=_L2)
                for u in range(step // LANES):
                    j = builder.add(loop.index, i64(u * LANES))
                    xs = [load_vector(builder, x_rows[t], j, F32, LANES, align=4) for t in range(tokens)]
                    for i in range(rows):
                        w = _widen_vector(builder, kind, w_rows[i], j, LANES, packed)
                        for t in range(tokens):
                            accs[i * tokens + t] = fmuladd(builder, w, xs[t], accs[i * tokens + t])
                accs = loop.close(accs)
            main = end
            sums = [horizontal_sum(builder, a) for a in accs]
            # the last k % LANES products, one at a time (a packed matrix has none: ``packable``)
            loop = Loop(builder, "wide_tail", main, main if packed else k, sums)
            j = loop.index
            sums = list(loop.values)
            for i in range(rows):
                w = _widen_scalar(builder, kind, w_rows[i], j)
                for t in range(tokens):
                    x = builder.load(builder.gep(x_rows[t], [j]))
                    sums[i * tokens + t] = builder.fadd(sums[i * tokens + t], builder.fmul(w, x))
            sums = loop.close(sums)
            for t in range(tokens):
                o_row = builder.bitcast(builder.gep(byte_pointer(builder, o_data),
                                                    [builder.mul(builder.add(args[3], i64(t)), o_strides[0])]),
                                        F32.as_pointer())
                for i in range(rows):
                    builder.store(sums[i * tokens + t], builder.gep(o_row, [builder.add(args[1], i64(i))]))
            return context.get_dummy_value()

        return types.none(W, types.int64, X, types.int64, out), codegen

    return tile
