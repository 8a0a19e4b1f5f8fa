"""The cpu executor's weights: views into the memory-mapped file (or copies of it), or 8-/4-bit blocks made at load.

A ``Weight`` is a 2-D matrix in one format, as one or more row blocks (a
tensor MindSpore split into several records stays split when the split falls
between rows: no copy). Stored 2-byte weights are numpy arrays with the
element type telling the format (uint16 = fp16, int16 = bf16): views of the
file, which cost no memory beyond its pages, or - where the OS gives large
arrays 2 MB pages (``copies_pay``) - one copy per matrix read from the file,
the same bytes in the same resident memory, streamed faster; a layer's
matrices are then also packed where rows fill a page (``dot_wide.pack_rows``: a
tile's 4 rows in one stream, the same values, 1.02-1.10x faster to read). Quantized weights (``int8``,
``q4_0``, ``q4_1``, ``q4_k``: packed blocks, ``quant_formats``) are made slice by slice
from ordinary file reads, so the original never sits in memory beside its
copy; a block holding NaN or Inf stops loading with the tensor's name.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

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
    format: str                                   # "float16", "bfloat16", "float32", "int8", "q4_0", "q4_1", "q4_k"
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
            yield first, (int(scales[1]) if data.dtype == np.uint8 else stored_rows(data)), data, scales

    def find_row(self, row: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(data, scales, row within that part) for a row of the whole matrix."""
        for first, data, scales in reversed(self.parts):
            if row >= first:
                return data, scales, row - first
        raise IndexError(row)


def stored_rows(data: np.ndarray) -> int:
    """Rows of a stored matrix's array: [rows, k], or packed [rows / PACK_ROWS, k / LANES, PACK_ROWS * LANES]."""
    if data.ndim == 3:
        from .dot_wide import PACK_ROWS
        return data.shape[0] * PACK_ROWS
    return data.shape[0]


STORED_WEIGHTS = "LLAMA_DESK_STORED_WEIGHTS"   # "map", "copy" or "packed": overrides ``stored_layout``
_LAYOUTS = ("map", "copy", "packed")


def stored_layout() -> str:
    """How stored layer matrices are held: ``map`` (views of the file), ``copy`` (arrays, rows as stored) or
    ``packed`` (arrays, ``dot_wide.pack_rows``): packed where copies pay (``copies_pay``), else the map.
    ``LLAMA_DESK_STORED_WEIGHTS`` decides instead (``copy``: to measure the packing against rows as stored)."""
    chosen = os.environ.get(STORED_WEIGHTS, "").strip().lower()
    if chosen in _LAYOUTS:
        return chosen
    return "packed" if copies_pay() else "map"


_PAGE = 4096   # bytes: rows at least this long are what packing helps


def packs_layers(source: TensorSource, names) -> bool:
    """Whether the stored layer matrices ``names`` are packed: the layout says so and every one can be (the
    compiled step takes one array type per matrix kind, so a model's layers are packed all or none).

    By default only where every row fills a page: a tile's rows are then four streams a page apart, which packing
    makes one (TinyLlama, 0.85B: 1.00-1.14x decode). Shorter rows already lie close together: the built-in
    model's (576-1536 weights) decoded 0.96x packed. ``LLAMA_DESK_STORED_WEIGHTS=packed`` packs any length."""
    from .dot_wide import packable

    names = list(names)
    if stored_layout() != "packed" or not names:
        return False
    forced = os.environ.get(STORED_WEIGHTS, "").strip().lower() == "packed"
    for n in names:
        info = source.tensors[n]
        rows, k = info.shape[0], int(prod(info.shape[1:]))
        if not packable((rows, k)) or (not forced and k * np.dtype(_VIEW[info.dtype]).itemsize < _PAGE):
            return False
    return True


def copies_pay() -> bool:
    """Whether stored matrices are read faster from copies than from the file's map.

    Decoding streams every weight once per token. Linux backs a large numpy
    array with 2 MB pages (transparent huge pages, which numpy asks for), while
    a file's map mostly gets 4 KB ones: a TLB miss, and the hardware prefetcher
    starting cold, every 4 KB of each row stream. Measured on 2 cores, three
    decoders in one process in turns (map, copy, llama.cpp F16): copies decode
    1.05x (TinyLlama fp16) and 1.08x (0.85B bf16) the map's speed. Elsewhere
    (Windows gives no large pages without a privilege; THP off) the copy only
    costs load time, so the map stays. ``LLAMA_DESK_STORED_WEIGHTS=map|copy`` decides instead.
    """
    chosen = os.environ.get(STORED_WEIGHTS, "").strip().lower()
    if chosen in _LAYOUTS:
        return chosen != "map"
    if not sys.platform.startswith("linux"):
        return False
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(encoding="ascii")
    except OSError:
        return False
    if "[always]" in mode:
        return True
    return "[madvise]" in mode and _numpy_asks_for_huge_pages()


def _numpy_asks_for_huge_pages() -> bool:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    ask = getattr(multiarray, "_get_madvise_hugepage", None)
    return bool(ask and ask())


def stored_weight(source: TensorSource, name: str, copy: bool = False, pack: bool = False) -> Weight:
    """A tensor as stored: zero-copy views of the map (a copy only if a record split falls inside a row), or with
    ``copy`` one array read from the file (ordinary reads: the map's pages never become resident), with ``pack``
    packed for the kernels (``dot_wide.pack_rows``; the caller checked ``packs_layers``)."""
    info = source.tensors[name]
    rows, k = info.shape[0], int(prod(info.shape[1:]))
    view = _VIEW[info.dtype]
    if copy or pack:
        data = source.read_rows(name, 0, rows).view(view).reshape(rows, k)
        if pack:
            from .dot_wide import pack_rows
            data = pack_rows(data)
        data.flags.writeable = False   # as the map's views are: the kernels compiled for them serve both
        return Weight((rows, k), info.dtype, [(0, data, NO_SCALES)])
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
