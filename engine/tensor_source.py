"""What every weight file reader offers: an index of tensors and cheap access.

A reader maps the file once and records, per tensor, its dtype, shape and the
byte ranges ("chunks") holding its data. Nothing is read until asked for, so a
checkpoint can be validated against the config before memory is spent on it.
``float32(name)`` converts chunk by chunk straight into the destination, so a
split or 2-byte tensor never needs a second full-size temporary.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from .errors import CheckpointError

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1,
            "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}
# numpy has no bfloat16: its bits are read as uint16 and widened by hand.
_NUMPY_DTYPE = {"bfloat16": np.uint16}
_BLOCK = 1 << 22  # elements converted at a time (16 MiB of float32)


@dataclass
class TensorInfo:
    name: str
    dtype: str                       # "float16", "bfloat16", "float32", ...
    shape: tuple[int, ...]
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (offset, nbytes)

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * ITEMSIZE[self.dtype]


def bf16_bits_to_float32(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits into place."""
    if out is None:
        out = np.empty(bits.shape, np.float32)
    wide = out.view(np.uint32)
    np.left_shift(bits, 16, out=wide, dtype=np.uint32)
    return out


class TensorSource:
    """Base for memory-mapped weight files; subclasses fill ``self.tensors``."""

    format_name = "weights"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tensors: dict[str, TensorInfo] = {}
        if not self.path.is_file():
            raise CheckpointError(f"Checkpoint not found: {self.path}")
        self._file = open(self.path, "rb")
        self._size = self.path.stat().st_size
        if self._size == 0:
            self._file.close()
            raise CheckpointError(f"{self.path} is empty (0 bytes). Download it again.")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = memoryview(self._map)

    # -- access -------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def info(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def chunk_arrays(self, name: str) -> list[np.ndarray]:
        """Zero-copy numpy views of each stored chunk (flat, raw dtype)."""
        info = self.tensors[name]
        dtype = _NUMPY_DTYPE.get(info.dtype, info.dtype)
        return [np.frombuffer(self._map, dtype=dtype, count=n // ITEMSIZE[info.dtype], offset=off)
                for off, n in info.chunks]

    def raw(self, name: str) -> np.ndarray:
        """The tensor in its stored dtype (bf16 as uint16 bits); a view when unsplit."""
        info = self.tensors[name]
        parts = self.chunk_arrays(name)
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return flat.reshape(info.shape)

    def float32(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """The tensor as a new float32 array, converted block by block.

        Each block's file pages are released as soon as it is converted, so the
        memory in flight is one block, not one (possibly 1 GB) tensor.
        """
        info = self.tensors[name]
        if out is None:
            out = np.empty(info.shape, np.float32)
        flat_out = out.reshape(-1)
        pos = 0
        itemsize = ITEMSIZE[info.dtype]
        for (offset, _), part in zip(info.chunks, self.chunk_arrays(name)):
            for begin in range(0, part.size, _BLOCK):
                block = part[begin:begin + _BLOCK]
                dest = flat_out[pos:pos + block.size]
                if info.dtype == "bfloat16":
                    bf16_bits_to_float32(block, out=dest)
                else:
                    dest[...] = block
                pos += block.size
                self._release_range(offset + begin * itemsize, block.size * itemsize)
        return out

    def release(self, name: str) -> None:
        """Tell the OS we are done with a tensor's pages, so RSS stays near the weights."""
        for off, n in self.tensors[name].chunks:
            self._release_range(off, n)

    def _release_range(self, offset: int, nbytes: int) -> None:
        advice = getattr(mmap, "MADV_DONTNEED", None)  # absent on Windows: pages age out instead
        if advice is None:
            return
        start = offset - offset % mmap.PAGESIZE
        try:
            self._map.madvise(advice, start, nbytes + offset - start)
        except (OSError, ValueError):
            pass

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    # -- lifetime -----------------------------------------------------------
    def close(self) -> None:
        try:
            self._buf.release()
            self._map.close()
        except (BufferError, ValueError):
            pass  # a caller still holds a view; the map closes when it is freed
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
