"""Zero-copy reader for MindSpore ``.ckpt`` files.

``mindspore.load_checkpoint`` parses the whole protobuf into memory (peak ~2x
the file) and crashes on duplicated records, so a 16 GB LLaMA3 checkpoint
cannot be loaded on a PC. The format is simple enough to index directly:

    Checkpoint  { repeated Value value = 1; }
    Value       { string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor = 3; }
    TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3; }

We memory-map the file, walk the record headers (never the tensor bytes) and
remember where each tensor's content lies. Tensors over 512 MiB are written as
several consecutive records with the same tag; they become one entry with
several chunks. Records that are not numeric tensors (training extras such as
``append_dict`` strings) are skipped. ``save_checkpoint(crc_check=True)`` ends
the file with ``crc_num`` + a 10-byte CRC32 of everything before it, which
``integrity.py`` verifies; an encrypted file is refused by name.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import CheckpointError, quote

from .dtypes import CKPT_NAMES
from .tensor_source import TensorInfo, TensorSource

CRC_TRAILER = b"crc_num"
CRC_TRAILER_LEN = len(CRC_TRAILER) + 10
# MindSpore's encrypted files start with this block magic (0x7F3A5ED8, little-endian).
_CIPHER_MAGIC = b"\xd8\x5e\x3a\x7f"


class _Corrupt(Exception):
    """Internal: the byte stream is not a valid checkpoint at some offset."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint too long")


def _fields(buf, pos: int, end: int):
    """Yield (field_number, wire_type, value_or_start, stop) for one message."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, pos
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Corrupt("field runs past the end of its message")
            yield field, wire, pos, pos + length
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            yield field, wire, None, pos
        else:
            raise _Corrupt(f"unsupported wire type {wire}")
    if pos != end:
        raise _Corrupt("message runs past its end")


def _parse_tensor(buf, start: int, end: int) -> tuple[list[int], str, int, int]:
    dims: list[int] = []
    dtype = ""
    content = (start, start)
    for field, wire, a, b in _fields(buf, start, end):
        if field == 1 and wire == 0:
            dims.append(a)
        elif field == 1 and wire == 2:  # packed dims
            pos = a
            while pos < b:
                value, pos = _varint(buf, pos, b)
                dims.append(value)
        elif field == 2 and wire == 2:
            dtype = bytes(buf[a:min(b, a + 200)]).decode("utf-8", "replace")
        elif field == 3 and wire == 2:
            content = (a, b)
    return dims, dtype, content[0], content[1]


class CkptReader(TensorSource):
    """Index of a MindSpore ``.ckpt``; tensors are numpy views into an mmap."""

    format_name = "MindSpore checkpoint"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._file = self._open(self.path)
        self.crc: tuple[int, int] | None = None   # (stored CRC32, bytes it covers)
        self.skipped: dict[str, str] = {}          # records that are not numeric tensors: tag -> stored type
        self._index_or_close(self._index)

    def _index(self) -> None:
        buf, size = self._file.buffer, self._file.size
        if bytes(buf[:4]) == _CIPHER_MAGIC:
            raise CheckpointError(
                f"{self.path} is an encrypted MindSpore checkpoint (saved with enc_key). It cannot be read "
                "without its key: decrypt it with MindSpore (load_checkpoint(..., dec_key=...) and save it "
                "again without enc_key), or use an unencrypted copy.", path=self.path,
                code="checkpoint_encrypted", params={"path": self.path})
        pos, last_tag = 0, None
        try:
            while pos < size:
                if size - pos == CRC_TRAILER_LEN and bytes(buf[pos:pos + 7]) == CRC_TRAILER:
                    self.crc = (int.from_bytes(bytes(buf[pos + 7:size]), "big"), pos)
                    break
                key, pos = _varint(buf, pos, size)
                if key != (1 << 3 | 2):
                    raise _Corrupt(f"unexpected field key {key}")
                length, pos = _varint(buf, pos, size)
                if pos + length > size:
                    raise _Corrupt("record runs past the end of the file")
                tag, tensor = None, None
                for field, wire, a, b in _fields(buf, pos, pos + length):
                    if field == 1 and wire == 2:
                        tag = bytes(buf[a:min(b, a + 1000)]).decode("utf-8", "replace")
                    elif field == 2 and wire == 2:
                        tensor = _parse_tensor(buf, a, b)
                pos += length
                if tag is None or tensor is None:
                    continue  # map tensors and empty records are not model weights
                self._add_chunk(tag, *tensor, same_as_last=(tag == last_tag))
                last_tag = tag
        except _Corrupt as exc:
            raise CheckpointError(
                f"{self.path} is truncated or corrupt ({exc} at byte {pos} of {size}). Download it again.",
                path=self.path,
                code="checkpoint_truncated",
                params={"path": self.path, "error": str(exc), "position": pos, "size": size}) from None
        self._check_sizes()

    def _add_chunk(self, tag, dims, type_name, c0, c1, same_as_last) -> None:
        dtype = CKPT_NAMES.get(type_name)
        if dtype is None:
            # Training extras (append_dict strings, Int4 or unknown types): not model weights.
            self.skipped.setdefault(tag, type_name)
            return
        if same_as_last:
            info = self.tensors[tag]
            if list(info.shape) != dims or info.dtype != dtype:
                raise _Corrupt(f"tensor {quote(tag)} is split into records that disagree")
            info.chunks.append((c0, c1 - c0))
            return
        if tag in self.tensors:
            raise _Corrupt(f"tensor {quote(tag)} appears twice, not in consecutive records")
        self.tensors[tag] = TensorInfo(tag, dtype, tuple(dims), self._file, [(c0, c1 - c0)])

    def _check_sizes(self) -> None:
        for info in self.tensors.values():
            stored = sum(n for _, n in info.chunks)
            if stored != info.nbytes:
                raise CheckpointError(
                    f"{self.path} is corrupt: tensor {quote(info.name)} {list(info.shape)[:8]} {info.dtype} "
                    f"should hold {info.nbytes} bytes but holds {stored}. Download it again.", path=self.path,
                    code="checkpoint_tensor_size",
                    params={"path": self.path, "tensor": quote(info.name), "shape": list(info.shape)[:8],
                            "dtype": info.dtype, "expected": info.nbytes, "found": stored})
