"""Softmax attention of a set of query rows over one key/value head, each key and value row read once for all.

Decode and prefill used to attend one (token, head) at a time: every key and
value row was re-read and re-widened (fp16 bits -> float32) for each of the
``rep`` query heads sharing it (GQA) and for each prompt token, which held
prefill's attention near 38 GFLOP/s. Here one call takes the rows of a KV group
- a token's ``rep`` heads when decoding, several tokens x those heads in prefill,
each row with its own causal length - and works in register tiles as
``dot_wide`` does for weights: ``QK_ROWS`` rows x ``QK_KEYS`` keys per key load
for the scores, ``PV_ROWS`` rows x ``PV_CHUNKS`` vectors per value load for the
weighted sum.

Batch invariance: a row's output is bit-identical whatever rows share its call
and wherever it sits in a tile (a token decoded alone, in a batched step, in a
prefill block of any cut), because each row always takes one fixed order:
- score of key s: one ``LANES``-wide accumulator walked along head_dim in order,
  summed by the halving tree of ``horizontal_sum`` (several accumulators are
  summed at once by ``horizontal_sums``, which adds exactly the same pairs),
  then the head_dim % LANES products one by one, then times ``scale``;
- softmax (two passes): the maximum (exact in any order), then
  e = ``exp_vector``(score - max) (our own polynomial, the same on every lane)
  and their sum in ``LANES`` lanes over whole chunks of the row's length, a
  horizontal sum, then the leftover keys in order;
- output lane d: sum over keys s = 0, 1, ... of e_s * v_s[d], one fused
  multiply-add at a time from zero, then times 1 / sum. Keys past a row's length
  (a shorter row in a tile) have e = 0 and add exactly nothing.
The kernels are compiled without fastmath (``EXACT``) so LLVM keeps that order.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .dot_wide import _ELEMENT, _widen_vector
from .jit import KERNEL
from .llvm_ir import (F32, I32, LANES, Loop, array_parts, byte_pointer, call_intrinsic, const, fmuladd,
                      horizontal_sum, i64, load_vector, shuffle, splat, vec)

# No fastmath: the order written here is the order run (the point of this module).
EXACT = dict(KERNEL, fastmath=False)
QK_ROWS, QK_KEYS = 4, (4 if LANES == 16 else 2)     # scores tile: accumulators QK_ROWS * QK_KEYS (16 or 8 registers)
PV_ROWS, PV_CHUNKS = 4, (4 if LANES == 16 else 2)   # output tile: rows x LANES-wide chunks of head_dim


def _row_pointer(builder, data, stride, row):
    return builder.gep(byte_pointer(builder, data), [builder.mul(row, stride)])


def _f32_row(builder, data, stride, row):
    return builder.bitcast(_row_pointer(builder, data, stride, row), F32.as_pointer())


def horizontal_sums(builder, accs):
    """``horizontal_sum`` of each vector in ``accs`` (a power of two of them, at most their width) as one vector.

    Pairs of vectors are halved together (lane i + lane i + n/2 of each, as ``horizontal_sum`` adds), so each
    result is bit-identical to ``horizontal_sum`` of its own vector, for far fewer shuffles.
    """
    n = accs[0].type.count
    parts = list(accs)        # each vector holds ``len(accs) / len(parts)`` segments of ``n`` lanes
    while n > 1:
        half = n // 2
        segments = parts[0].type.count // n
        if len(parts) > 1:
            nxt = []
            for a, b in zip(parts[0::2], parts[1::2]):
                width = a.type.count
                lo = [seg * n + i for seg in range(segments) for i in range(half)]
                hi = [seg * n + half + i for seg in range(segments) for i in range(half)]
                first = lo + [width + j for j in lo]
                second = hi + [width + j for j in hi]
                nxt.append(builder.fadd(shuffle(builder, a, first, b), shuffle(builder, a, second, b)))
            parts = nxt
        else:
            lo = [seg * n + i for seg in range(segments) for i in range(half)]
            hi = [seg * n + half + i for seg in range(segments) for i in range(half)]
            parts = [builder.fadd(shuffle(builder, parts[0], lo), shuffle(builder, parts[0], hi))]
        n = half
    return parts[0]


def exp_vector(builder, x):
    """e**x lane by lane for x <= 0 (softmax's score - max): Cephes' expf polynomial, ~1 ulp, 0 below -87.3."""
    n = x.type.count
    f = lambda value: const(vec(F32, n), [value] * n)   # noqa: E731
    low = f(-87.33654)                                   # e**low = 2**-126, the smallest normal float
    x = builder.select(builder.fcmp_ordered("<", x, low), low, x)
    whole = call_intrinsic(builder, f"llvm.floor.v{n}f32", x.type, [fmuladd(builder, x, f(1.44269504088896341), f(0.5))])
    r = fmuladd(builder, whole, f(-0.693359375), x)
    r = fmuladd(builder, whole, f(2.12194440e-4), r)
    p = f(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = fmuladd(builder, p, r, f(c))
    p = builder.fadd(fmuladd(builder, p, builder.fmul(r, r), r), f(1.0))
    exponent = builder.add(builder.fptosi(whole, vec(I32, n)), const(vec(I32, n), [127] * n))
    two_to = builder.bitcast(builder.shl(exponent, const(vec(I32, n), [23] * n)), x.type)
    return builder.fmul(p, two_to)


@lru_cache(maxsize=None)
def score_tile(rows: int, keys: int):
    """``tile(Q, r0, K, s0, scale, S)``: S[r0 + i, s0 + j] = scale * Q[r0 + i] . K[s0 + j], i < rows, j < keys."""

    @intrinsic
    def tile(typingctx, Q, r0, K, s0, scale, S):
        if not (isinstance(K, types.Array) and K.dtype in _ELEMENT and Q.dtype == types.float32):
            return None
        kind = _ELEMENT[K.dtype]

        def codegen(context, builder, signature, args):
            q_data, q_shape, q_strides = array_parts(context, builder, signature.args[0], args[0])
            k_data, _, k_strides = array_parts(context, builder, signature.args[2], args[2])
            s_data, _, s_strides = array_parts(context, builder, signature.args[5], args[5])
            hd = q_shape[1]
            qs = [_f32_row(builder, q_data, q_strides[0], builder.add(args[1], i64(i))) for i in range(rows)]
            ks = [_row_pointer(builder, k_data, k_strides[0], builder.add(args[3], i64(j))) for j in range(keys)]
            main = builder.mul(builder.sdiv(hd, i64(LANES)), i64(LANES))
            loop = Loop(builder, "qk_main", i64(0), main, [const(vec(F32, LANES), None)] * (rows * keys), LANES)
            accs = list(loop.values)
            kv = [_widen_vector(builder, kind, ks[j], loop.index, LANES) for j in range(keys)]
            for i in range(rows):
                qv = load_vector(builder, qs[i], loop.index, F32, LANES, align=4)
                for j in range(keys):
                    accs[i * keys + j] = fmuladd(builder, qv, kv[j], accs[i * keys + j])
            accs = loop.close(accs)
            rows_out = [_f32_row(builder, s_data, s_strides[0], builder.add(args[1], i64(i))) for i in range(rows)]
            summed = horizontal_sums(builder, accs) if len(accs) > 1 else None
            with builder.if_else(builder.icmp_signed("==", main, hd)) as (whole_vectors, leftover_lanes):
                with whole_vectors:     # head_dim a multiple of LANES (every real model): scale and store as vectors
                    if summed is None:
                        sums = [builder.fmul(horizontal_sum(builder, accs[0]), args[4])]
                    else:
                        scaled = builder.fmul(summed, splat(builder, args[4], len(accs)))
                        sums = [shuffle(builder, scaled, range(i * keys, (i + 1) * keys)) for i in range(rows)]
                    for i in range(rows):
                        at = builder.gep(rows_out[i], [args[3]])
                        if summed is None:
                            builder.store(sums[0], at)
                        else:
                            builder.store(sums[i], builder.bitcast(at, sums[i].type.as_pointer()), align=4)
                with leftover_lanes:    # the same sums, then the last head_dim % LANES products one by one
                    if summed is None:
                        sums = [horizontal_sum(builder, accs[0])]
                    else:
                        sums = [builder.extract_element(summed, i64(a)) for a in range(len(accs))]
                    loop = Loop(builder, "qk_tail", main, hd, sums)
                    sums = list(loop.values)
                    for j in range(keys):
                        kd = builder.extract_element(_widen_vector(builder, kind, ks[j], loop.index, 1), i64(0))
                        for i in range(rows):
                            qd = builder.load(builder.gep(qs[i], [loop.index]))
                            sums[i * keys + j] = builder.fadd(sums[i * keys + j], builder.fmul(qd, kd))
                    sums = loop.close(sums)
                    for i in range(rows):
                        for j in range(keys):
                            builder.store(builder.fmul(sums[i * keys + j], args[4]),
                                          builder.gep(rows_out[i], [builder.add(args[3], i64(j))]))
            return context.get_dummy_value()

        return types.none(Q, types.int64, K, types.int64, types.float32, S), codegen

    return tile


@intrinsic
def softmax_row(typingctx, S, r, length, longest):
    """S[r, :length] = exp(S[r] - max S[r, :length]), S[r, length:longest] = 0; returns 1 / their sum."""
    if S.dtype != types.float32:
        return None

    def codegen(context, builder, signature, args):
        s_data, _, s_strides = array_parts(context, builder, signature.args[0], args[0])
        row = _f32_row(builder, s_data, s_strides[0], args[1])
        length, longest = args[2], args[3]
        main = builder.mul(builder.sdiv(length, i64(LANES)), i64(LANES))
        lowest = const(vec(F32, LANES), [float("-inf")] * LANES)
        loop = Loop(builder, "max_main", i64(0), main, [lowest], LANES)
        v = load_vector(builder, row, loop.index, F32, LANES, align=4)
        (best,) = loop.close([builder.select(builder.fcmp_ordered(">", v, loop.values[0]), v, loop.values[0])])
        width = LANES
        while width > 1:    # the largest lane (exact in any order)
            width //= 2
            a, b = shuffle(builder, best, range(width)), shuffle(builder, best, range(width, 2 * width))
            best = builder.select(builder.fcmp_ordered(">", a, b), a, b)
        best = builder.extract_element(best, i64(0))
        loop = Loop(builder, "max_tail", main, length, [best])
        x = builder.load(builder.gep(row, [loop.index]))
        (best,) = loop.close([builder.select(builder.fcmp_ordered(">", x, loop.values[0]), x, loop.values[0])])
        top = splat(builder, best, LANES)
        loop = Loop(builder, "exp_main", i64(0), main, [const(vec(F32, LANES), None)], LANES)
        at = builder.bitcast(builder.gep(row, [loop.index]), vec(F32, LANES).as_pointer())
        e = exp_vector(builder, builder.fsub(builder.load(at, align=4), top))
        builder.store(e, at, align=4)
        (total,) = loop.close([builder.fadd(loop.values[0], e)])
        total = horizontal_sum(builder, total)
        loop = Loop(builder, "exp_tail", main, length, [total])
        at = builder.gep(row, [loop.index])
        one = builder.insert_element(const(vec(F32, 1), None), builder.fsub(builder.load(at), best), i64(0))
        e = builder.extract_element(exp_vector(builder, one), i64(0))
        builder.store(e, at)
        (total,) = loop.close([builder.fadd(loop.values[0], e)])
        loop = Loop(builder, "zero_past", length, longest, [])
        builder.store(const(F32, 0.0), builder.gep(row, [loop.index]))
        loop.close([])
        return builder.fdiv(const(F32, 1.0), total)

    return types.float32(S, types.int64, types.int64, types.int64), codegen


@lru_cache(maxsize=None)
def value_tile(rows: int, chunks: int):
    """``tile(P, r0, V, longest, inv, O, d0)``: O[r0 + i, d0:d0 + chunks * LANES] = (P[r0 + i, :longest] @ V) * inv[r0 + i].

    ``chunks`` = 0: the head_dim % LANES last lanes, one by one (from ``d0``).
    """

    @intrinsic
    def tile(typingctx, P, r0, V, longest, inv, O, d0):
        if not (isinstance(V, types.Array) and V.dtype in _ELEMENT and P.dtype == types.float32):
            return None
        kind = _ELEMENT[V.dtype]

        def codegen(context, builder, signature, args):
            p_data, _, p_strides = array_parts(context, builder, signature.args[0], args[0])
            v_data, _, v_strides = array_parts(context, builder, signature.args[2], args[2])
            i_data, _, _ = array_parts(context, builder, signature.args[4], args[4])
            o_data, _, o_strides = array_parts(context, builder, signature.args[5], args[5])
            d0 = args[6]
            r_index = [builder.add(args[1], i64(i)) for i in range(rows)]
            ps = [_f32_row(builder, p_data, p_strides[0], r) for r in r_index]
            starts = [builder.add(d0, i64(c * LANES)) for c in range(chunks)] if chunks else [d0]
            n = LANES if chunks else 1
            loop = Loop(builder, "pv", i64(0), args[3], [const(vec(F32, n), None)] * (rows * len(starts)))
            accs = list(loop.values)
            v_row = _row_pointer(builder, v_data, v_strides[0], loop.index)
            vs = [_widen_vector(builder, kind, v_row, d, n) for d in starts]
            for i in range(rows):
                p = splat(builder, builder.load(builder.gep(ps[i], [loop.index])), n)
                for c, v in enumerate(vs):
                    accs[i * len(starts) + c] = fmuladd(builder, p, v, accs[i * len(starts) + c])
            accs = loop.close(accs)
            weights = builder.bitcast(i_data, F32.as_pointer())
            for i in range(rows):
                scale = splat(builder, builder.load(builder.gep(weights, [r_index[i]])), n)
                out = _f32_row(builder, o_data, o_strides[0], r_index[i])
                for c, d in enumerate(starts):
                    at = builder.bitcast(builder.gep(out, [d]), vec(F32, n).as_pointer())
                    builder.store(builder.fmul(accs[i * len(starts) + c], scale), at, align=4)
            return context.get_dummy_value()

        return types.none(P, types.int64, V, types.int64, inv, O, types.int64), codegen

    return tile


_score_big, _score_rows = score_tile(QK_ROWS, QK_KEYS), score_tile(QK_ROWS, 1)
_score_keys, _score_one = score_tile(1, QK_KEYS), score_tile(1, 1)
_value_big, _value_chunk, _value_lane = value_tile(PV_ROWS, PV_CHUNKS), value_tile(PV_ROWS, 1), value_tile(PV_ROWS, 0)
_value_row, _value_row_chunk, _value_row_lane = value_tile(1, PV_CHUNKS), value_tile(1, 1), value_tile(1, 0)


@njit(**EXACT)
def _values_tile(P, r0, V, longest, inv, O):
    """Output rows r0..r0 + PV_ROWS - 1: head_dim in blocks of PV_CHUNKS vectors, then single vectors, then lanes."""
    hd, d = O.shape[1], 0
    while d + PV_CHUNKS * LANES <= hd:
        _value_big(P, r0, V, longest, inv, O, d)
        d += PV_CHUNKS * LANES
    while d + LANES <= hd:
        _value_chunk(P, r0, V, longest, inv, O, d)
        d += LANES
    while d < hd:
        _value_lane(P, r0, V, longest, inv, O, d)
        d += 1


@njit(**EXACT)
def _values_row(P, r0, V, longest, inv, O):
    """Output row r0 alone, in the same blocks."""
    hd, d = O.shape[1], 0
    while d + PV_CHUNKS * LANES <= hd:
        _value_row(P, r0, V, longest, inv, O, d)
        d += PV_CHUNKS * LANES
    while d + LANES <= hd:
        _value_row_chunk(P, r0, V, longest, inv, O, d)
        d += LANES
    while d < hd:
        _value_row_lane(P, r0, V, longest, inv, O, d)
        d += 1


@njit(**EXACT)
def attend_rows(Q, keys, values, first_length, per_length, scores, inv, O):
    """O[r] = softmax(Q[r] . keys[:n_r] / sqrt(head_dim)) @ values[:n_r] for every row r of Q (float32 [rows, head_dim]).

    Row r sees n_r = first_length + r // per_length keys (a token's heads share a length; the next token's rows
    see one more). keys / values: [positions, head_dim] fp16 bits, bf16 bits or float32. scores: float32
    [rows, >= the longest n_r], inv: float32 [rows] (scratch). Each row's bits are independent of the others.
    """
    n, scale = Q.shape[0], np.float32(1.0 / math.sqrt(Q.shape[1]))
    longest = first_length + (n - 1) // per_length
    r = 0
    while r + QK_ROWS <= n:
        s = 0
        while s + QK_KEYS <= longest:
            _score_big(Q, r, keys, s, scale, scores)
            s += QK_KEYS
        while s < longest:
            _score_rows(Q, r, keys, s, scale, scores)
            s += 1
        r += QK_ROWS
    while r < n:
        s = 0
        while s + QK_KEYS <= longest:
            _score_keys(Q, r, keys, s, scale, scores)
            s += QK_KEYS
        while s < longest:
            _score_one(Q, r, keys, s, scale, scores)
            s += 1
        r += 1
    for r in range(n):
        inv[r] = softmax_row(scores, r, first_length + r // per_length, longest)
    r = 0
    while r + PV_ROWS <= n:
        _values_tile(scores, r, values, longest, inv, O)
        r += PV_ROWS
    while r < n:
        _values_row(scores, r, values, longest, inv, O)
        r += 1

