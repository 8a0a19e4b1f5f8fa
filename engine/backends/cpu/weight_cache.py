"""The 8-/4-bit weights a load made, kept on disk so the next load of the same checkpoint reads them back.

Quantizing at load reads the whole 2-byte checkpoint and fits every block:
on 2 cores a LLaMA3-8b int4 load took 110-175 s, most of it the q4_k fit,
where llama.cpp and Ollama load an already-quantized file in seconds. So the
first load writes what it made (one file per checkpoint and weight format, in
``<user data>/quantized-weights``) while it goes, and later loads read that
file: 4.5 GB instead of 16 GB and no fitting.

A file is trusted only when everything it was made from is unchanged: the
checkpoint files' names, sizes and modification times, the tensors' shapes and
formats, and the packing code itself (the digest of the modules that define the
layouts and rules, so a changed quantizer never meets blocks of the old one).
Each tensor's bytes carry a CRC-32, checked as they are read (~4 GB/s); a
damaged or half-written file is deleted and the weights are quantized again.
Writes go to a temporary file renamed into place when complete, so a killed
load leaves no file that looks whole. The folder is kept within a size
(``LLAMA_DESK_WEIGHT_CACHE_GB``, default 16; 0 turns the cache off): the least
recently loaded files go first, and nothing is written when it would not fit
or would leave the disk with less than 2 GB free.

File: the tensors' bytes (each at a 4 KiB boundary), then a UTF-8 JSON index,
then 16 bytes: the index's offset (little-endian u64) and ``TRAILER``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np

from engine.atomic_write import replace_with_retry
from engine.kept_files import evict_least_recent, kept_files, kept_size, remove_kept

log = logging.getLogger("engine.weight_cache")
SUFFIX = ".qweights"
TRAILER = b"LDQW-v1\n"
LIMIT_ENV = "LLAMA_DESK_WEIGHT_CACHE_GB"
DEFAULT_LIMIT_GB = 16.0
_ALIGN = 4096
_FREE_MARGIN = 2 << 30          # never leave the disk with less than this free
_STALE_TMP_S = 1800             # a temporary file untouched this long belongs to a load that was killed
_CHUNK = 1 << 24                # bytes read (and checked) at a time
_INDEX_BYTES = 256               # a tensor's entry in the index, at most (name, offset, shape, CRC)


def limit_bytes(gb: float | None = None) -> int:
    """The folder's size limit: ``gb`` (the load's ``weight_cache_gb``), else ``LLAMA_DESK_WEIGHT_CACHE_GB``
    (default 16 GB; 0 or a bad value: off)."""
    if gb is not None:
        return max(0, int(gb * 1e9))
    raw = os.environ.get(LIMIT_ENV, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_LIMIT_GB
    except ValueError:
        log.warning("%s=%r is not a number of GB: the quantized-weights cache is off", LIMIT_ENV, raw)
        return 0
    return max(0, int(gb * 1e9))


def cache_size(folder: Path) -> int:
    """Bytes the kept quantized weights in ``folder`` take."""
    return kept_size(folder, SUFFIX)


def trim(folder: Path, gb: float | None = None) -> None:
    """Bring the folder within its limit now (a lowered limit need not wait for the next load): the least
    recently loaded files go first; 0 deletes them all (those another program holds open stay)."""
    _evict(Path(folder), limit_bytes(gb), None)


def remove_all(folder: Path) -> int:
    """Delete every kept file (those another program holds open stay); how many were deleted."""
    return remove_kept(path for path, _, _ in kept_files(folder, SUFFIX))


def _packing_digest() -> str:
    """A digest of the code that defines the packed layouts and quantization rules (a change = new files)."""
    from . import dot_quant, quant_formats, quantize

    digest = hashlib.sha256()
    for module in (dot_quant, quant_formats):
        try:
            digest.update(Path(module.__file__).read_bytes())
        except OSError:              # no source beside the bytecode: the package's version stands for it
            from importlib.metadata import PackageNotFoundError, version
            try:
                digest.update(version("llama-desk").encode())
            except PackageNotFoundError:
                digest.update(b"unknown")
    digest.update(quantize.INT4_LAYOUT.encode())
    return digest.hexdigest()


def _evict(folder: Path, budget: int, keep: Path | None) -> None:
    """Delete the least recently used files until the folder fits ``budget`` (never ``keep``), and dead temps."""
    evict_least_recent(folder, SUFFIX, budget, keep=frozenset() if keep is None else {keep}, stale_tmp_s=_STALE_TMP_S)


class WeightCache:
    """One load's use of the cache: read every quantized tensor from a kept file, or write them all to a new one.

    ``tensors`` maps each matrix the load quantizes to (format code, rows, k), in load order.
    ``read(name)`` gives a ``Weight`` or None (no usable file: quantize it, then ``add`` it);
    ``finish()`` after a complete load, ``abandon()`` after a failed or cancelled one.
    """

    def __init__(self, folder: Path, source, weight_format: str, tensors: dict[str, tuple[int, int, int]],
                 limit: int):
        self.folder, self.limit, self.tensors = Path(folder), limit, tensors
        files = [[str(Path(f.path).resolve()), os.stat(f.path).st_size, os.stat(f.path).st_mtime_ns]
                 for f in getattr(source, "files", [])]
        self.identity = {"files": files, "weight_format": weight_format, "packing": _packing_digest(),
                         "tensors": {name: list(spec) for name, spec in tensors.items()}}
        key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]
        stem = "".join(ch for ch in Path(source.path).stem if ch.isalnum() or ch in "-_.")[:48] or "weights"
        self.path = self.folder / f"{stem}-{weight_format}-{key}{SUFFIX}"
        self._index = self._read_index()
        self._reader = open(self.path, "rb") if self._index is not None else None
        self._writer = None
        self._written: dict[str, dict] = {}
        if self._index is None:
            self._start_writing()

    @classmethod
    def open(cls, folder: Path, source, weight_format: str, tensors: dict[str, tuple[int, int, int]],
             limit_gb: float | None = None):
        """The cache for this load, or None when it is off or there is nothing to quantize (``limit_gb``:
        ``limit_bytes``)."""
        limit = limit_bytes(limit_gb)
        if limit <= 0 or not tensors or not getattr(source, "files", None):
            return None
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            return cls(folder, source, weight_format, tensors, limit)
        except OSError as exc:       # a read-only or full disk: load as if there were no cache
            log.warning("the quantized-weights cache in %s cannot be used: %s", folder, exc)
            return None

    @property
    def hit(self) -> bool:
        return self._reader is not None

    # -- reading ---------------------------------------------------------------------------------
    def _read_index(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < 16:
                    raise ValueError("shorter than its trailer")
                f.seek(size - 16)
                offset, trailer = struct.unpack("<Q8s", f.read(16))
                if trailer != TRAILER or offset > size - 16:
                    raise ValueError("no trailer: not written to the end")
                f.seek(offset)
                index = json.loads(f.read(size - 16 - offset).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._discard(f"unreadable ({exc})")
            return None
        if index.get("identity") != self.identity or set(index.get("tensors", {})) != set(self.tensors):
            self._discard("made from other files or by other code")
            return None
        try:
            os.utime(self.path)      # used now: the last to be evicted
        except OSError:
            pass
        return index["tensors"]

    def read(self, name: str):
        """The tensor's blocks from the kept file (CRC checked), or None: quantize it (and ``add`` it)."""
        if self._reader is None:
            return None
        entry = self._index[name]
        fmt, rows, k = self.tensors[name]
        data = np.empty(tuple(entry["shape"]), np.uint8)
        view = memoryview(data).cast("B")
        self._reader.seek(entry["offset"])
        crc, at = 0, 0
        while at < len(view):
            got = self._reader.readinto(view[at:at + _CHUNK])
            if not got:
                break
            crc = zlib.crc32(view[at:at + got], crc)
            at += got
        if at != len(view) or crc != entry["crc32"]:
            self._reader.close()
            self._reader = None
            self._discard(f"the tensor {name} does not match its checksum")
            return None
        from .quant_formats import FORMAT_NAMES
        from .weights import Weight
        return Weight((rows, k), FORMAT_NAMES[fmt], [(0, data, np.array([fmt, rows, k], np.int64))])

    def _discard(self, why: str) -> None:
        log.warning("quantized weights %s not used: %s; quantizing again", self.path.name, why)
        try:
            self.path.unlink()
        except OSError:
            pass

    # -- writing ---------------------------------------------------------------------------------
    def _start_writing(self) -> None:
        _evict(self.folder, self.limit, keep=None)
        from .quant_formats import packed_shape
        need = sum(-(-int(np.prod(packed_shape(fmt, rows, k))) // _ALIGN) * _ALIGN
                   for fmt, rows, k in self.tensors.values()) + _INDEX_BYTES * len(self.tensors)
        others = cache_size(self.folder)
        free = shutil.disk_usage(self.folder).free
        if need > self.limit or need + _FREE_MARGIN > free:
            log.info("quantized weights not kept: %.2f GB would not fit (limit %.2f GB, %.2f GB free)",
                     need / 1e9, self.limit / 1e9, free / 1e9)
            return
        if others + need > self.limit:
            _evict(self.folder, self.limit - need, keep=None)
        self._tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        self._writer = open(self._tmp, "wb")

    def add(self, name: str, weight) -> None:
        """Append a tensor just quantized (a failure to write only means no file this time)."""
        if self._writer is None:
            return
        try:
            data = weight.data
            offset = -self._writer.tell() % _ALIGN + self._writer.tell()
            self._writer.seek(offset)
            self._writer.write(memoryview(data).cast("B"))
            self._written[name] = {"offset": offset, "shape": list(data.shape), "crc32": zlib.crc32(data)}
        except OSError as exc:
            log.warning("quantized weights not kept: writing %s failed: %s", self._tmp, exc)
            self.abandon()

    def finish(self) -> None:
        """After a complete load: the new file gets its index and its name (or, after a hit, nothing to do)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            if set(self._written) != set(self.tensors):
                raise OSError("not every tensor was written")
            index = json.dumps({"identity": self.identity, "tensors": self._written}).encode("utf-8")
            offset = writer.seek(0, os.SEEK_END)
            writer.write(index)
            writer.write(struct.pack("<Q8s", offset, TRAILER))
            writer.flush()
            os.fsync(writer.fileno())   # on disk before it has its name: a power cut leaves no half file
            writer.close()
            replace_with_retry(self._tmp, self.path)
        except OSError as exc:
            log.warning("quantized weights not kept: %s", exc)
            writer.close()
            self._tmp.unlink(missing_ok=True)
            return
        _evict(self.folder, self.limit, keep=self.path)

    def abandon(self) -> None:
        """After a failed or cancelled load: no file is left behind."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            try:
                self._tmp.unlink()
            except OSError:
                pass

