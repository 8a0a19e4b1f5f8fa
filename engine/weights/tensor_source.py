"""What every weight file reader offers: an index of tensors and cheap access to their bytes.

A reader maps its file(s) once and records, per tensor, its dtype, shape and
the byte ranges ("chunks") holding its data. Nothing is read until asked for,
so a checkpoint can be validated against the config before memory is spent
on it. Views handed out (``raw``, ``chunk_arrays``) point into the memory map;
whoever holds them must drop them before ``close()``, which then really
closes the map and the file (Windows keeps a mapped file locked otherwise).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from engine.errors import CheckpointError

from .dtypes import bf16_bits_to_float32, itemsize, numpy_view_dtype

_BLOCK = 1 << 22  # elements converted at a time (16 MiB of float32)


class MappedFile:
    """One read-only memory-mapped file; closed for sure, even when indexing it fails."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"Checkpoint not found: {self.path}",
                                  code="checkpoint_file_not_found", params={"path": self.path})
        self.size = self.path.stat().st_size
        if self.size == 0:
            raise CheckpointError(f"{self.path} is empty (0 bytes): an interrupted download? Download it again.",
                                  code="checkpoint_empty", params={"path": self.path})
        self._file = open(self.path, "rb")
        try:
            self.map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            self._file.close()
            raise CheckpointError(f"Cannot map {self.path} into memory ({exc}).",
                                  code="checkpoint_cannot_map", params={"path": self.path, "error": str(exc)}) from None
        self.buffer = memoryview(self.map)

    def array(self, dtype, count: int, offset: int) -> np.ndarray:
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=offset)

    def read_into(self, offset: int, dest: memoryview) -> None:
        """Fill ``dest`` from the file at ``offset`` with ordinary reads (no mapped pages touched)."""
        self._file.seek(offset)
        got = 0
        while got < len(dest):
            n = self._file.readinto(dest[got:])
            if not n:
                raise CheckpointError(f"{self.path} ended early while reading it: was it changed or truncated "
                                      "after it was opened?",
                                      code="checkpoint_changed_while_read", params={"path": self.path})
            got += n

    def release_range(self, offset: int, nbytes: int) -> None:
        """Tell the OS we are done with these pages, so resident memory stays near what we keep."""
        advice = getattr(mmap, "MADV_DONTNEED", None)  # absent on Windows: pages age out instead
        if advice is None or self.map.closed:
            return
        start = offset - offset % mmap.PAGESIZE
        try:
            self.map.madvise(advice, start, nbytes + offset - start)
        except (OSError, ValueError):
            pass

    @property
    def closed(self) -> bool:
        return self.map.closed

    def close(self) -> None:
        """Close the map and the file. Raises BufferError if a numpy view of the map is still alive."""
        if not self.map.closed:
            self.buffer.release()
            self.map.close()
        self._file.close()


@dataclass
class TensorInfo:
    name: str
    dtype: str                       # "float16", "bfloat16", "float32", ...
    shape: tuple[int, ...]
    file: MappedFile = field(repr=False)
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (offset, nbytes) in ``file``

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * itemsize(self.dtype)


class TensorSource:
    """Base for memory-mapped weight files; subclasses open files and fill ``self.tensors``."""

    format_name = "weights"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tensors: dict[str, TensorInfo] = {}
        self.files: list[MappedFile] = []

    def _open(self, path: Path) -> MappedFile:
        mapped = MappedFile(path)
        self.files.append(mapped)
        return mapped

    def _index_or_close(self, index) -> None:
        """Run ``index()``; on any failure close every file before the error propagates."""
        try:
            index()
        except BaseException:
            self.tensors.clear()
            self.close()
            raise

    # -- access -------------------------------------------------------------
    def chunk_arrays(self, name: str) -> list[np.ndarray]:
        """Zero-copy flat numpy views of each stored chunk, in the stored dtype (bf16 as uint16)."""
        info = self.tensors[name]
        dtype, size = numpy_view_dtype(info.dtype), itemsize(info.dtype)
        return [info.file.array(dtype, n // size, off) for off, n in info.chunks]

    def raw(self, name: str) -> np.ndarray:
        """The tensor in its stored dtype (bf16 as uint16 bits); a view when stored in one chunk."""
        info = self.tensors[name]
        parts = self.chunk_arrays(name)
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return flat.reshape(info.shape)

    def float32(self, name: str) -> np.ndarray:
        """The tensor as a new float32 array, converted block by block.

        Each block's file pages are released as soon as it is converted, so the
        memory in flight is one block, not one (possibly 1 GB) tensor.
        """
        info = self.tensors[name]
        out = np.empty(info.shape, np.float32)
        flat_out = out.reshape(-1)
        pos, size = 0, itemsize(info.dtype)
        for (offset, _), part in zip(info.chunks, self.chunk_arrays(name)):
            for begin in range(0, part.size, _BLOCK):
                block = part[begin:begin + _BLOCK]
                dest = flat_out[pos:pos + block.size]
                if info.dtype == "bfloat16":
                    bf16_bits_to_float32(block, out=dest)
                else:
                    dest[...] = block
                pos += block.size
                info.file.release_range(offset + begin * size, block.size * size)
        return out

    def read_rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        """Rows r0..r1 of a 2-D tensor in its stored dtype, read through the file rather than the map.

        Reading (unlike touching mapped pages) does not add the file to this
        process's resident memory: converting a whole checkpoint this way keeps
        RSS at what is converted, on Windows too.
        """
        info = self.tensors[name]
        size = itemsize(info.dtype)
        row_bytes = int(prod(info.shape[1:])) * size
        out = np.empty((r1 - r0,) + tuple(info.shape[1:]), numpy_view_dtype(info.dtype))
        view = memoryview(out.reshape(-1).view(np.uint8))
        want_begin, want_end = r0 * row_bytes, r1 * row_bytes
        chunk_begin = filled = 0
        for offset, nbytes in info.chunks:
            lo, hi = max(want_begin, chunk_begin), min(want_end, chunk_begin + nbytes)
            if lo < hi:
                info.file.read_into(offset + lo - chunk_begin, view[filled:filled + hi - lo])
                filled += hi - lo
            chunk_begin += nbytes
        return out

    def release(self, name: str) -> None:
        """Drop a tensor's file pages from this process's resident memory (it stays readable)."""
        info = self.tensors[name]
        for offset, nbytes in info.chunks:
            info.file.release_range(offset, nbytes)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def file_bytes(self) -> int:
        return sum(f.size for f in self.files)

    # -- lifetime -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return all(f.closed for f in self.files)

    def close(self) -> None:
        for mapped in self.files:
            mapped.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
