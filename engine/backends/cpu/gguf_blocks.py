"""Weights taken as they are from a GGUF file's own Q4_0 / Q4_1 / Q8_0 blocks (the built-in model's source).

Re-quantizing 4-bit values through float would round them a second time;
instead each block's fp16 scale (and minimum) and its integers are moved,
byte for byte, into the executor's packed layout (``quant_formats``): the
nibble order of a GGUF 4-bit block (byte j holds elements j and j + 16) is
already ours, and a Q8_0 integer q is stored as q + 128. Rows of the query and
key matrices are reordered from GGUF's interleaved RoPE pairs back to
rotate-half, as the built-in model's conversion does for its float copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit, prange

from engine.errors import CheckpointError
from engine.weights.names import gguf_to_ours

from .dot_quant import BLOCK, GROUP, Q4_0, Q4_1, Q8, block_bytes, header_bytes
from .jit import PARALLEL, widen
from .quant_formats import FORMAT_NAMES, packed_shape
from .weights import Weight

_GGUF_TYPES = {"Q8_0": (Q8, 34), "Q4_0": (Q4_0, 18), "Q4_1": (Q4_1, 20)}  # our format, bytes per GGUF block


@njit(**dict(PARALLEL, fastmath=False))
def _repack(fmt, src, order, out):
    """GGUF blocks ``src`` [rows, blocks * size] (row ``order[r]`` becomes row r) into packed ``out``;
    returns how many blocks have a scale or minimum that is NaN or Inf."""
    rows = order.size
    size = src.shape[1] // (out.shape[1] // block_bytes(fmt))
    per_block, head = block_bytes(fmt), header_bytes(fmt)
    bad = np.zeros(rows, np.int64)
    for r in prange(rows):
        row, group, lane = src[order[r]], out[r // GROUP], r % GROUP
        for b in range(src.shape[1] // size):
            block, base = b * size, b * per_block
            scale_bits = np.uint16(np.uint16(row[block]) | (np.uint16(row[block + 1]) << np.uint16(8)))
            group[base + 2 * lane], group[base + 2 * lane + 1] = row[block], row[block + 1]
            finite = np.isfinite(widen(scale_bits))
            codes = block + 2
            if fmt == Q4_1:
                min_bits = np.uint16(np.uint16(row[block + 2]) | (np.uint16(row[block + 3]) << np.uint16(8)))
                at = base + 2 * GROUP + 2 * lane
                group[at], group[at + 1] = row[block + 2], row[block + 3]
                finite = finite and np.isfinite(widen(min_bits))
                codes = block + 4
            bad[r] += 0 if finite else 1
            if fmt == Q8:
                for e in range(BLOCK):
                    group[base + head + (e >> 2) * 4 * GROUP + 4 * lane + (e & 3)] = np.uint8(
                        (np.int32(np.int8(row[codes + e])) + 128))
            else:
                for j in range(BLOCK // 2):
                    group[base + head + (j >> 2) * 4 * GROUP + 4 * lane + (j & 3)] = row[codes + j]
    return bad.sum()


def _rope_order(rows: int, heads: int) -> np.ndarray:
    """Row order undoing GGUF's interleaved RoPE layout (``builtin_model.unpermute_rope``'s on indices)."""
    head_dim = rows // heads
    return np.arange(rows).reshape(heads, head_dim // 2, 2).swapaxes(1, 2).reshape(rows).astype(np.int64)


def gguf_block_weights(path: Path, heads: int, kv_heads: int) -> dict[str, Weight]:
    """Packed weights of every Q4_0/Q4_1/Q8_0 matrix in the GGUF file, by our tensor name."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    weights = {}
    for tensor in reader.tensors:
        kind, name = _GGUF_TYPES.get(tensor.tensor_type.name), gguf_to_ours(tensor.name)
        if kind is None or name is None or len(tensor.shape) != 2:
            continue
        fmt, size = kind
        k, rows = (int(d) for d in tensor.shape)
        src = np.asarray(tensor.data).reshape(rows, (k // BLOCK) * size)
        order = np.arange(rows, dtype=np.int64)
        if tensor.name.endswith("attn_q.weight"):
            order = _rope_order(rows, heads)
        elif tensor.name.endswith("attn_k.weight"):
            order = _rope_order(rows, kv_heads)
        packed = np.zeros(packed_shape(fmt, rows, k), np.uint8)
        if _repack(fmt, src, order, packed):
            raise CheckpointError(f"{path.name}: the tensor {tensor.name} has NaN or infinite block scales; the "
                                  "file is damaged. Reinstall it.", path=path,
                                  code="gguf_bad_block_scales", params={"file": path.name, "tensor": tensor.name})
        weights[name] = Weight((rows, k), FORMAT_NAMES[fmt], [(0, packed, np.array([fmt, rows, k], np.int64))])
    return weights
