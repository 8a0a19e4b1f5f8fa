"""Small pieces for writing kernels directly in LLVM IR, and the vector width this CPU gets.

numba's own loops vectorize only when LLVM can prove enough about them; the
inner products that decide decode and prefill speed are therefore spelled out
as LLVM vector code (``dot_wide``, ``dot_quant``) built from these helpers:
typed vector constants, lane shuffles, a counted loop carrying accumulators,
a horizontal sum in a fixed order (so a result never depends on how a product
was tiled), and the data pointer of a numba array.

``ISA`` is read once from the CPU LLVM compiles for (numba compiles for the
host): ``avx512`` (512-bit vectors, VNNI byte dot products), ``avxvnni``
(256-bit with VNNI), ``avx2`` (256-bit, ``pmaddubsw``), or ``generic`` (any
other CPU: portable vector IR, LLVM picks the instructions). The environment
variable ``LLAMA_DESK_CPU_KERNELS`` forces a narrower one (tests run every
variant on one machine); the kernel cache keeps one folder per choice.
"""

from __future__ import annotations

import os

from llvmlite import ir

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F16, F32 = ir.HalfType(), ir.FloatType()
VARIANTS = ("avx512", "avxvnni", "avx2", "generic")


def _host_isa() -> str:
    """The widest variant the CPU numba compiles for can run: this one, or the one ``NUMBA_CPU_FEATURES`` names
    (numba then compiles for exactly those features: the host's AVX-512 kernels, their vectors split for an older
    target, would make LLVM fail or run nowhere)."""
    chosen = os.environ.get("NUMBA_CPU_FEATURES", "").strip()
    if chosen:
        flags = chosen
    else:
        import llvmlite.binding as llvm
        flags = llvm.get_host_cpu_features().flatten()
    features = {flag.strip()[1:] for flag in flags.split(",") if flag.strip().startswith("+")}
    if {"avx512f", "avx512bw", "avx512vl", "avx512vnni"} <= features:
        return "avx512"
    if {"avx2", "avxvnni", "fma", "f16c"} <= features:
        return "avxvnni"
    if {"avx2", "fma", "f16c"} <= features:
        return "avx2"
    return "generic"


def _chosen_isa() -> str:
    host = _host_isa()
    forced = os.environ.get("LLAMA_DESK_CPU_KERNELS", "").strip().lower()
    if forced in VARIANTS and VARIANTS.index(forced) >= VARIANTS.index(host):
        return forced
    return host


ISA = _chosen_isa()
# float32 lanes per vector: one zmm register on AVX-512, one ymm elsewhere.
LANES = 16 if ISA == "avx512" else 8


def vec(t, n: int) -> ir.VectorType:
    return ir.VectorType(t, n)


def const(t, value):
    return ir.Constant(t, value)


def i64(value: int):
    return ir.Constant(I64, value)


def shuffle(builder, v, lanes, other=None):
    """A new vector of ``v``'s lanes (indices past its width pick from ``other``)."""
    return builder.shuffle_vector(v, other if other is not None else v, ir.Constant(vec(I32, len(lanes)), list(lanes)))


def splat(builder, scalar, n: int):
    """A vector of ``n`` copies of ``scalar``."""
    one = builder.insert_element(ir.Constant(vec(scalar.type, 1), None), scalar, i64(0))
    return shuffle(builder, one, [0] * n)


def horizontal_sum(builder, lanes):
    """The lanes' float sum, halving the vector each step: the same order for every caller."""
    n = lanes.type.count
    while n > 1:
        n //= 2
        lanes = builder.fadd(shuffle(builder, lanes, range(n)), shuffle(builder, lanes, range(n, 2 * n)))
    return builder.extract_element(lanes, i64(0))


def call_intrinsic(builder, name: str, result_type, args):
    """Call an LLVM intrinsic (``llvm.fmuladd.v16f32``, ``llvm.x86.avx512.vpdpbusd.512``, ...)."""
    module = builder.module
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(result_type, [a.type for a in args]), name=name)
    return builder.call(fn, args)


def fmuladd(builder, a, b, c):
    """a * b + c, fused where the CPU has FMA (the same choice for every call on one machine)."""
    return call_intrinsic(builder, f"llvm.fmuladd.v{a.type.count}f32", a.type, [a, b, c])


def fence(builder, value):
    """``value`` unchanged, as a barrier fast-math reassociation cannot cross: a product computed in two steps
    then rounds the same way in every tile (batch invariance), whatever the optimizer does around it."""
    return call_intrinsic(builder, f"llvm.arithmetic.fence.v{value.type.count}f32", value.type, [value])


def prefetch(builder, address, locality: int = 3):
    """Ask for the cache line at the byte pointer ``address`` (a hint: never faults, changes no value).

    ``locality``: 3 keeps it in every cache level (x86 ``prefetcht0``), 2 from L2 out (``prefetcht1``)."""
    call_intrinsic(builder, "llvm.prefetch.p0", ir.VoidType(),
                   [address, ir.Constant(I32, 0), ir.Constant(I32, locality), ir.Constant(I32, 1)])


def load_vector(builder, base, offset, t, n: int, align: int = 1):
    """``n`` elements of type ``t`` at element ``offset`` of the typed pointer ``base``."""
    ptr = builder.bitcast(builder.gep(base, [offset]), vec(t, n).as_pointer())
    return builder.load(ptr, align=align)


def byte_pointer(builder, ptr):
    return builder.bitcast(ptr, I8.as_pointer())


def array_parts(context, builder, array_type, value):
    """(data pointer, shape list, stride list in bytes) of a numba array argument."""
    from numba.core import cgutils

    arr = context.make_array(array_type)(context, builder, value)
    shape = cgutils.unpack_tuple(builder, arr.shape, array_type.ndim)
    strides = cgutils.unpack_tuple(builder, arr.strides, array_type.ndim)
    return arr.data, shape, strides


class Loop:
    """``for i in range(start, stop, step)`` in LLVM IR, carrying values (accumulators) around.

    ``loop = Loop(builder, "name", start, stop, [acc...], step)``; the body is
    built at ``loop.index`` with ``loop.values``; ``loop.close([new values])``
    returns their values after the loop (the start values if it never ran).
    """

    def __init__(self, builder, name, start, stop, values, step: int = 1):
        self.builder, self.entry, self.step, self.stop = builder, builder.block, step, stop
        self.body = builder.function.append_basic_block(name)
        self.exit = builder.function.append_basic_block(name + "_exit")
        builder.cbranch(builder.icmp_signed("<", start, stop), self.body, self.exit)
        builder.position_at_end(self.body)
        self.index = builder.phi(I64)
        self.index.add_incoming(start, self.entry)
        self.values = []
        self._starts = list(values)
        for v in values:
            phi = builder.phi(v.type)
            phi.add_incoming(v, self.entry)
            self.values.append(phi)

    def close(self, new_values):
        builder = self.builder
        nxt = builder.add(self.index, i64(self.step))
        self.index.add_incoming(nxt, builder.block)
        for phi, v in zip(self.values, new_values):
            phi.add_incoming(v, builder.block)
        latch = builder.block
        builder.cbranch(builder.icmp_signed("<", nxt, self.stop), self.body, self.exit)
        builder.position_at_end(self.exit)
        results = []
        for start, v in zip(self._starts, new_values):
            out = builder.phi(v.type)
            out.add_incoming(start, self.entry)
            out.add_incoming(v, latch)
            results.append(out)
        return results
