"""The ``cpu`` backend: ``cpu_executor`` and its JIT-compiled kernels (numba; no MindSpore, no C compiler needed).

``jit`` configures numba (on-disk cache in the user-data folder, threads) and
holds the bit-level intrinsics; ``matvec`` the matrix-vector products per
weight format (``int8_dot`` the 8-bit one); ``decode_step`` one fused layer for
one token; ``prefill`` matrix-matrix products and attention for a block of
prompt tokens; ``quantize`` the 8-bit block format; ``weights`` how the
executor holds each matrix.
"""
