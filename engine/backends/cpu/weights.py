"""The cpu executor's weights: views into the memory-mapped file, or 8-/4-bit blocks made at load.

A ``Weight`` is a 2-D matrix in one format, as one or more row blocks (a
tensor MindSpore split into several records stays split when the split falls
between rows: no copy). Stored 2-byte weights are numpy views of the file
with the element type telling the format (uint16 = fp16, int16 = bf16), so
they cost no memory beyond the file's pages. Quantized weights (``int8``,
``q4_0``, ``q4_1``: packed blocks, ``quant_formats``) are made slice by slice
from ordinary file reads, so the original never sits in memory beside its
copy; a block holding NaN or Inf stops loading with the tensor's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np

from engine.errors import CheckpointError
from engine.weights.tensor_source import TensorSource

from .dot_quant import GROUP
from .quant_formats import FORMAT_NAMES, pack_rows, packed_shape

NO_SCALES = np.empty((0, 0), np.float32)
_VIEW = {"float16": np.uint16, "bfloat16": np.int16, "float32": np.float32}
_SLICE_BYTES = 1 << 25  # rows read and quantized at a time (32 MiB of stored weights)


@dataclass
class Weight:
    shape: tuple[int, int]
    format: str                                   # "float16", "bfloat16", "float32", "int8", "q4_0", "q4_1"
    # (first row, data, scales): packed formats have one part, data uint8 [groups, bytes], scales
    # int64 (format code, rows, k)
    parts: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def data(self) -> np.ndarray:
        return self.parts[0][1]

    @property
    def scales(self) -> np.ndarray:
        return self.parts[0][2]

    @property
    def nbytes(self) -> int:
        return sum(d.nbytes + s.nbytes for _, d, s in self.parts)

    def row_parts(self):
        """(first row, rows, data, scales) of each part."""
        for first, data, scales in self.parts:
            yield first, (int(scales[1]) if data.dtype == np.uint8 else data.shape[0]), data, scales

    def find_row(self, row: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(data, scales, row within that part) for a row of the whole matrix."""
        for first, data, scales in reversed(self.parts):
            if row >= first:
                return data, scales, row - first
        raise IndexError(row)


def stored_weight(source: TensorSource, name: str) -> Weight:
    """Zero-copy views of a tensor as stored (a copy only if a record split falls inside a row)."""
    info = source.tensors[name]
    rows, k = info.shape[0], int(prod(info.shape[1:]))
    view = _VIEW[info.dtype]
    parts, first = [], 0
    chunks = source.chunk_arrays(name)
    if any(c.size % k for c in chunks):
        chunks = [np.concatenate(chunks)]
    for chunk in chunks:
        block = chunk.view(view).reshape(-1, k)
        parts.append((first, block, NO_SCALES))
        first += block.shape[0]
    assert first == rows
    return Weight((rows, k), info.dtype, parts)


def quantized_weight(source: TensorSource, name: str, fmt: int) -> Weight:
    """The tensor in packed blocks of format ``fmt``, converted a slice of rows at a time from file reads."""
    info = source.tensors[name]
    rows, k = info.shape[0], int(prod(info.shape[1:]))
    groups, per_group = packed_shape(fmt, rows, k)
    data = np.zeros((groups, per_group), np.uint8)
    step = max(1, _SLICE_BYTES // (k * 4) // GROUP) * GROUP
    view = _VIEW[info.dtype]
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        stored = source.read_rows(name, r0, r1).view(view).reshape(r1 - r0, k)
        bad = pack_rows(fmt, stored, data[r0 // GROUP:(r1 + GROUP - 1) // GROUP])
        if bad:
            raise CheckpointError(f"{source.path.name}: the tensor {name} holds NaN or infinite values ({bad} blocks "
                                  f"of 32 from row {r0} on), so no quantized copy of it can be right. The file is "
                                  "damaged or was saved from a failed training run: use another checkpoint.",
                                  path=source.path, code="tensor_not_finite",
                                  params={"file": source.path.name, "tensor": name, "blocks": bad, "row": r0})
    return Weight((rows, k), FORMAT_NAMES[fmt], [(0, data, np.array([fmt, rows, k], np.int64))])


def vector(source: TensorSource, name: str) -> np.ndarray:
    """A 1-D tensor (norm weights) as float32."""
    return np.ascontiguousarray(source.float32(name).reshape(-1))
