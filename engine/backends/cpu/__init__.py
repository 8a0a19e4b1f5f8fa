"""The ``cpu`` backend: ``cpu_executor`` and its JIT-compiled kernels (numba; no MindSpore, no C compiler needed).

``jit`` configures numba (on-disk cache in the user-data folder, threads) and
holds the bit-level intrinsics; ``llvm_ir`` the pieces the LLVM vector kernels
are built from and the CPU variant they target; ``dot_wide`` (fp16, bf16,
float32 rows) and ``dot_quant`` (8-/4-bit blocks, integer products) those
kernels; ``matvec`` the one-token products per format; ``matmul`` the
several-token ones (prefill); ``decode_step`` one fused layer for one token;
``prefill`` a block of prompt tokens; ``quant_formats`` the block rules and
packing, ``quantize`` which matrices get which; ``weights`` how the executor
holds each matrix; ``precompile`` the first start's compiling, in a child
process.
"""
