"""A conversation's state on disk (a "prompt cache"): its token ids and their KV rows, in one file.

The one owner of the format; the CLI (``--prompt-cache``), the app (a file per conversation) and
the tests all go through here. Reading back a 2,000-token LLaMA3-8b state (~256 MB) takes a
second or two; recomputing it takes minutes.

Layout (little-endian)::

    header   b"LDKVSTAT" | u32 version | u32 n | n bytes of JSON | u32 crc32(JSON)
    segment  b"LDKVROWS" | u32 first position | u32 count | u32 crc32(payload) | payload
    payload  int32 ids[count] | keys [layer, kv_head, count, head_dim] | values (same shape)

The JSON holds the model identity (a digest of the weights, weight format, KV element type, RoPE
settings and tokenizer: ``state_identity``) and the rows' shape and element type. Segments follow
each other in position order; after an answer only its new rows are appended as one more segment.
What a reader trusts: the header must match the loaded model exactly, and each segment must be
whole and match its checksum. A file that does not match is ignored; reading stops at the first
short or damaged segment, keeping the verified ones before it (each was written whole, so they are
a correct state of a shorter conversation). Either way it is logged and the rest is recomputed.

Writes never leave a broken file where a good one was: a new file is written beside the old one,
flushed to disk and then swapped in (``os.replace``); an append first cuts the file back to a
segment boundary (a shorter, still valid state) and then adds a segment, which a reader ignores
until it is complete.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .kv_cache import shared_prefix

log = logging.getLogger("engine.prompt_cache")

FORMAT_VERSION = 1
FILE_MAGIC = b"LDKVSTAT"
SEGMENT_MAGIC = b"LDKVROWS"
_U32 = struct.Struct("<I")
_SEGMENT_HEAD = struct.Struct("<8sIII")          # magic, first position, count, crc32 of the payload
_ELEMENT_TYPES = {"float16": np.float16, "float32": np.float32}
RowsFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (start, stop) -> keys, values


@dataclass(frozen=True)
class StateLayout:
    """What one cached position holds: keys and values of every layer and KV head."""

    layers: int
    kv_heads: int
    head_dim: int
    element_type: str                            # "float16" or "float32"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_ELEMENT_TYPES[self.element_type])

    def rows_shape(self, count: int) -> tuple[int, int, int, int]:
        return (self.layers, self.kv_heads, count, self.head_dim)

    def payload_bytes(self, count: int) -> int:
        return 4 * count + 2 * int(np.prod(self.rows_shape(count))) * self.dtype.itemsize


@dataclass
class Segment:
    first: int                                   # position of its first row
    count: int
    offset: int                                  # where its payload starts in the file
    crc: int


@dataclass
class StateIndex:
    """What a file holds, from its headers and ids alone (no rows read yet)."""

    ids: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    def boundary_at_most(self, n: int) -> int:
        """The largest number of leading rows, at most ``n``, that ends exactly at a segment boundary."""
        best = 0
        for seg in self.segments:
            if seg.first + seg.count <= n:
                best = seg.first + seg.count
        return best


class PromptStateFile:
    """One state file for one model (``identity``) and cache ``layout``."""

    def __init__(self, path: str | Path, identity: str, layout: StateLayout):
        self.path = Path(path)
        self.identity = identity
        self.layout = layout
        self._header = self._header_bytes()

    def _header_bytes(self) -> bytes:
        meta = json.dumps({"identity": self.identity, "layers": self.layout.layers,
                           "kv_heads": self.layout.kv_heads, "head_dim": self.layout.head_dim,
                           "element_type": self.layout.element_type}, sort_keys=True).encode("utf-8")
        return FILE_MAGIC + _U32.pack(FORMAT_VERSION) + _U32.pack(len(meta)) + meta + _U32.pack(zlib.crc32(meta))

    # -- reading ------------------------------------------------------------------------------------

    def scan(self) -> StateIndex | None:
        """The ids the file holds and where its segments are; None if there is no usable file."""
        try:
            with open(self.path, "rb") as f:
                return self._scan(f, os.fstat(f.fileno()).st_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the saved state %s (%s); the prompt is computed instead", self.path, exc)
            return None

    def _scan(self, f, size: int) -> StateIndex | None:
        if f.read(len(self._header)) != self._header:
            log.warning("ignoring the saved state %s: written for another model, its settings or another "
                        "format version; the prompt is computed instead", self.path)
            return None
        index = StateIndex()
        pos = len(self._header)
        while pos < size:
            head = f.read(_SEGMENT_HEAD.size)
            if len(head) < _SEGMENT_HEAD.size:
                log.warning("the saved state %s ends inside a segment header (an interrupted save); using "
                            "the %d tokens before it", self.path, len(index.ids))
                break
            magic, first, count, crc = _SEGMENT_HEAD.unpack(head)
            payload = self.layout.payload_bytes(count)
            if magic != SEGMENT_MAGIC or first != len(index.ids) or count == 0:
                log.warning("the saved state %s is damaged at byte %d; using the %d tokens before it",
                            self.path, pos, len(index.ids))
                break
            if pos + _SEGMENT_HEAD.size + payload > size:
                log.warning("the saved state %s ends inside a segment (an interrupted save); using the %d tokens "
                            "before it", self.path, len(index.ids))
                break
            ids = np.frombuffer(f.read(4 * count), np.int32)
            index.segments.append(Segment(first, count, pos + _SEGMENT_HEAD.size, crc))
            index.ids.extend(int(i) for i in ids)
            pos += _SEGMENT_HEAD.size + payload
            f.seek(pos)
        return index

    def read_rows(self, index: StateIndex, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first position, keys, values) of the verified rows covering start..stop-1, in order.

        Stops early (logged) at a segment whose checksum or ids do not match what ``scan`` saw:
        the caller then has only the rows yielded so far.
        """
        layout = self.layout
        with open(self.path, "rb") as f:
            for seg in index.segments:
                if seg.first + seg.count <= start:
                    continue
                if seg.first >= stop:
                    return
                f.seek(seg.offset)
                payload = f.read(layout.payload_bytes(seg.count))
                if len(payload) != layout.payload_bytes(seg.count) or zlib.crc32(payload) != seg.crc:
                    log.warning("the saved state %s is damaged (checksum of the rows at %d..%d); using the %d "
                                "tokens before them", self.path, seg.first, seg.first + seg.count - 1, seg.first)
                    return
                ids = np.frombuffer(payload, np.int32, seg.count)
                if ids.tolist() != index.ids[seg.first:seg.first + seg.count]:
                    log.warning("the saved state %s changed while it was read; using the %d tokens before it",
                                self.path, seg.first)
                    return
                size = int(np.prod(layout.rows_shape(seg.count)))
                rows = np.frombuffer(payload, layout.dtype, 2 * size, 4 * seg.count)
                keys = rows[:size].reshape(layout.rows_shape(seg.count))
                values = rows[size:].reshape(layout.rows_shape(seg.count))
                a, b = max(start, seg.first) - seg.first, min(stop, seg.first + seg.count) - seg.first
                yield seg.first + a, keys[:, :, a:b], values[:, :, a:b]

    # -- writing ------------------------------------------------------------------------------------

    def _segment(self, ids: Sequence[int], first: int, keys: np.ndarray, values: np.ndarray) -> list[bytes]:
        count = len(ids)
        dtype = self.layout.dtype
        if keys.shape != self.layout.rows_shape(count) or values.shape != keys.shape:
            raise ValueError(f"rows of shape {keys.shape} do not fit the state's layout {self.layout}")
        parts = [np.asarray(ids, np.int32).tobytes(), np.ascontiguousarray(keys, dtype).data,
                 np.ascontiguousarray(values, dtype).data]
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        return [_SEGMENT_HEAD.pack(SEGMENT_MAGIC, first, count, crc)] + parts

    def save(self, ids: Sequence[int], rows: RowsFn, have_from: int = 0) -> int:
        """Make the file hold ``ids``; ``rows(a, b)`` gives their rows for any a >= ``have_from``.

        Appends when the file already holds a prefix ending at a segment boundary at or after
        ``have_from``, else writes a new file and swaps it in. Returns the bytes written; raises
        OSError (the previous file is then still valid) or ValueError when the rows needed are not
        available (the file is then removed, so the next save writes it whole).
        """
        ids = [int(i) for i in ids]
        index = self.scan()
        keep = index.boundary_at_most(shared_prefix(index.ids, ids)) if index else 0
        if keep == len(ids) and index is not None and index.ids == ids:
            self.touch()
            return 0
        if keep >= have_from and keep > 0:
            return self._append(index, keep, ids, rows)
        if have_from > 0:
            self.remove()
            raise ValueError(f"{self.path} no longer holds the first {have_from} tokens the new rows follow")
        return self._rewrite(ids, rows)

    def _append(self, index: StateIndex, keep: int, ids: list[int], rows: RowsFn) -> int:
        cut = next(s.offset + self.layout.payload_bytes(s.count) for s in index.segments if s.first + s.count == keep)
        if keep == len(ids):
            parts = []
        else:
            keys, values = rows(keep, len(ids))
            parts = self._segment(ids[keep:], keep, keys, values)
        with open(self.path, "r+b") as f:
            f.truncate(cut)                      # a shorter but valid state, if we stop here
            f.seek(cut)
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        return sum(len(memoryview(p).cast("B")) for p in parts)

    def _rewrite(self, ids: list[int], rows: RowsFn) -> int:
        keys, values = rows(0, len(ids))
        parts = [self._header] + self._segment(ids, 0, keys, values)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())
            replace_file(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return sum(len(memoryview(p).cast("B")) for p in parts)

    def touch(self) -> None:
        """Mark the file as just used (the size bound evicts the least recently used first)."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the saved state %s: %s", self.path, exc)


def replace_file(source: Path, target: Path, attempts: int = 20) -> None:
    """``os.replace``, retried for a moment: on Windows a reader or a virus scanner may hold the target."""
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def model_facts(source, cfg, tokenizer) -> dict:
    """What a saved state depends on that the weight file and tokenizer tell: read before loading
    (an executor may close the file once it has the weights)."""
    import hashlib
    from dataclasses import asdict

    files = []
    for mapped in getattr(source, "files", []):
        st = os.stat(mapped.path)
        files.append([mapped.path.name, st.st_size, st.st_mtime_ns])
    tokenizer_digest = ""
    path = getattr(tokenizer, "path", None)
    if path is not None and Path(path).is_file():
        tokenizer_digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"tensors": sorted([name, info.dtype, list(info.shape)] for name, info in source.tensors.items()),
            "files": files, "tokenizer": tokenizer_digest,
            "rope": {"theta": cfg.theta, "head_dim": cfg.head_dim,
                     "scaling": asdict(cfg.rope_scaling) if cfg.rope_scaling else None},
            "layers": cfg.num_layers, "kv_heads": cfg.kv_heads, "eps": cfg.rms_norm_eps}


def state_identity(facts: dict, executor) -> str:
    """The digest a state file's header carries: weights, weight format, KV element type, RoPE, tokenizer."""
    import hashlib

    described = dict(facts, format=FORMAT_VERSION, backend=executor.name, weight_format=executor.weight_format,
                     kv_element_type=executor.kv_element_type)
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()
