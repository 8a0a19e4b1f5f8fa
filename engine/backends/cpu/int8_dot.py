"""The 8-bit dot product, written as LLVM vector code: integer products, one float multiply per block.

numba widens int8 * int8 to int64 and LLVM then gives up on vectorizing, so
this one routine is spelled out in LLVM IR with portable vector types: per
block of 32, sign-extend weights and activations, multiply, add neighbouring
products (x86 turns this into ``pmaddwd``), add halves, convert to float and
multiply-add with the block's two scales into an 8-lane accumulator; the lanes
are summed once per row. This is llama.cpp's Q8_0 scheme with one change:
the activations are quantized per block of 32 to 16 bits, not 8
(``quantize_activation``, once per input vector). ``pmaddwd`` multiplies 16-bit
lanes anyway, so it costs nothing, and it removes the activations' share of
the error (8-bit activations moved the built-in model's perplexity by 1.2%,
16-bit ones by 0.4%, the weights' own share). A block sum stays far inside
int32: 32 * 127 * 32767 < 2^31.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import KERNEL

BLOCK = 32
_I8, _I16, _I32, _I64, _F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()


def _vec(t, n):
    return ir.VectorType(t, n)


def _shuffle(builder, v, lanes):
    return builder.shuffle_vector(v, v, ir.Constant(_vec(_I32, len(lanes)), list(lanes)))


def _block_sums(builder, w_ptr, x_wide):
    """8 int32 lanes whose sum is one block's dot product (x86: vpmovsxbw + vpmaddwd + vpaddd)."""
    products = builder.mul(builder.sext(builder.load(w_ptr, align=1), _vec(_I32, BLOCK)), x_wide)
    pairs = builder.add(_shuffle(builder, products, range(0, BLOCK, 2)), _shuffle(builder, products, range(1, BLOCK, 2)))
    return builder.add(_shuffle(builder, pairs, range(8)), _shuffle(builder, pairs, range(8, 16)))


def _horizontal_sum(builder, lanes):
    four = builder.fadd(_shuffle(builder, lanes, range(4)), _shuffle(builder, lanes, range(4, 8)), flags=["fast"])
    two = builder.fadd(_shuffle(builder, four, range(2)), _shuffle(builder, four, range(2, 4)), flags=["fast"])
    return builder.fadd(builder.extract_element(two, ir.Constant(_I32, 0)),
                        builder.extract_element(two, ir.Constant(_I32, 1)), flags=["fast"])


GROUP = 8  # blocks whose scales are multiplied as one vector


class _Loop:
    """A counted loop in LLVM IR: ``for i in range(start, stop)`` carrying vector accumulators."""

    def __init__(self, builder, name, start, stop, accs):
        self.builder, self.entry = builder, builder.block
        self.body = builder.function.append_basic_block(name)
        self.exit = builder.function.append_basic_block(name + "_exit")
        builder.cbranch(builder.icmp_signed("<", start, stop), self.body, self.exit)
        builder.position_at_end(self.body)
        self.index = builder.phi(_I64)
        self.index.add_incoming(start, self.entry)
        self.accs = []
        for acc in accs:
            phi = builder.phi(acc.type)
            phi.add_incoming(acc, self.entry)
            self.accs.append(phi)
        self.stop = stop

    def close(self, new_accs, step=1):
        builder = self.builder
        nxt = builder.add(self.index, ir.Constant(_I64, step))
        self.index.add_incoming(nxt, builder.block)
        for phi, acc in zip(self.accs, new_accs):
            phi.add_incoming(acc, builder.block)
        latch = builder.block
        builder.cbranch(builder.icmp_signed("<", nxt, self.stop), self.body, self.exit)
        builder.position_at_end(self.exit)
        results = []
        for start_value, acc in zip(self.accs, new_accs):
            out = builder.phi(acc.type)
            out.add_incoming(start_value.incomings[0][0], self.entry)
            out.add_incoming(acc, latch)
            results.append(out)
        return results


def _make_rows_dot(rows: int):
    """An intrinsic computing ``rows`` consecutive rows at once: out[r0 + i] = row dot for i < rows.

    Several rows share each block of x, and each row has its own accumulator, so the
    multiply-adds of different rows overlap instead of waiting on one chain. The two
    scales of each block are multiplied eight blocks at a time as vectors, then each
    block takes its lane (one shuffle instead of two scalar loads, a multiply and a
    broadcast); blocks past the last full group of eight take the scalar way.
    """
    @intrinsic
    def rows_dot(typingctx, W, r0, XQ, SW, SX, out):
        """W int8 [n, k], SW float32 [n, k/32] C-contiguous; XQ int16 [k]; SX float32 [k/32]; out float32."""
        if not (isinstance(W, types.Array) and W.dtype == types.int8 and XQ.dtype == types.int16):
            return None

        def codegen(context, builder, signature, args):
            w = context.make_array(signature.args[0])(context, builder, args[0])
            xq = context.make_array(signature.args[2])(context, builder, args[2])
            sw = context.make_array(signature.args[3])(context, builder, args[3])
            sx = context.make_array(signature.args[4])(context, builder, args[4])
            dest = context.make_array(signature.args[5])(context, builder, args[5])
            k = cgutils.unpack_tuple(builder, w.shape, 2)[1]
            blocks = builder.udiv(k, ir.Constant(_I64, BLOCK))
            grouped = builder.mul(builder.udiv(blocks, ir.Constant(_I64, GROUP)), ir.Constant(_I64, GROUP))
            firsts = [builder.add(args[1], ir.Constant(_I64, i)) for i in range(rows)]
            w_rows = [builder.gep(w.data, [builder.mul(r, k)]) for r in firsts]
            s_rows = [builder.gep(sw.data, [builder.mul(r, blocks)]) for r in firsts]
            zero = ir.Constant(_vec(_F32, 8), None)

            def block_step(acc, b, w_row, scale_v, x_wide):
                offset = builder.mul(b, ir.Constant(_I64, BLOCK))
                w_ptr = builder.bitcast(builder.gep(w_row, [offset]), _vec(_I8, BLOCK).as_pointer())
                sums = builder.sitofp(_block_sums(builder, w_ptr, x_wide), _vec(_F32, 8))
                return builder.fadd(acc, builder.fmul(sums, scale_v, flags=["fast"]), flags=["fast"])

            def x_block(b):
                offset = builder.mul(b, ir.Constant(_I64, BLOCK))
                x_ptr = builder.bitcast(builder.gep(xq.data, [offset]), _vec(_I16, BLOCK).as_pointer())
                return builder.sext(builder.load(x_ptr, align=2), _vec(_I32, BLOCK))

            def vload(ptr_base, b):
                ptr = builder.bitcast(builder.gep(ptr_base, [b]), _vec(_F32, GROUP).as_pointer())
                return builder.load(ptr, align=4)

            # groups of eight blocks, scales as vectors
            loop = _Loop(builder, "int8_groups", ir.Constant(_I64, 0), grouped, [zero] * rows)
            g = loop.index
            x_scales = vload(sx.data, g)
            scales = [builder.fmul(vload(s_row, g), x_scales) for s_row in s_rows]
            accs = list(loop.accs)
            for j in range(GROUP):
                b = builder.add(g, ir.Constant(_I64, j))
                x_wide = x_block(b)
                for i in range(rows):
                    accs[i] = block_step(accs[i], b, w_rows[i], _shuffle(builder, scales[i], [j] * 8), x_wide)
            accs = loop.close(accs, step=GROUP)

            # the blocks after the last full group
            loop = _Loop(builder, "int8_tail", grouped, blocks, accs)
            b = loop.index
            x_wide = x_block(b)
            x_scale = builder.load(builder.gep(sx.data, [b]))
            accs = list(loop.accs)
            for i in range(rows):
                scale = builder.fmul(builder.load(builder.gep(s_rows[i], [b])), x_scale)
                scale_v = _shuffle(builder, builder.insert_element(zero, scale, ir.Constant(_I32, 0)), [0] * 8)
                accs[i] = block_step(accs[i], b, w_rows[i], scale_v, x_wide)
            accs = loop.close(accs)

            for r, lanes in zip(firsts, accs):
                builder.store(_horizontal_sum(builder, lanes), builder.gep(dest.data, [r]))
            return context.get_dummy_value()

        return types.none(W, r0, XQ, SW, SX, out), codegen
    return rows_dot


int8_rows4 = _make_rows_dot(4)
int8_rows1 = _make_rows_dot(1)


# Exact IEEE arithmetic: the activation's scale and rounding follow the stated rule.
@njit(**dict(KERNEL, fastmath=False))
def quantize_activation(x, xq, xs):
    """x (float32 [k]) -> xq (int16, -32767..32767) and xs (float32 [k/32]): 16-bit blocks of x."""
    for b in range(x.size // BLOCK):
        amax = np.float32(0.0)
        for j in range(b * BLOCK, b * BLOCK + BLOCK):
            amax = max(amax, abs(x[j]))
        scale = amax / np.float32(32767.0)
        inv = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
        xs[b] = scale
        for j in range(b * BLOCK, b * BLOCK + BLOCK):
            v = x[j] * inv
            xq[j] = np.int16(np.floor(abs(v) + np.float32(0.5)) * (1 if v >= 0 else -1))
