"""Zero-copy reader for MindSpore ``.ckpt`` files.

``mindspore.load_checkpoint`` parses the whole protobuf into memory (peak ~2x
the file) and crashes on split records, so a 16 GB LLaMA3 checkpoint cannot be
loaded on a PC. The format is simple enough to index directly:

    Checkpoint  { repeated Value value = 1; }
    Value       { string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor = 3; }
    TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3; }

We memory-map the file, walk the record headers (never the tensor bytes) and
remember where each tensor's content lies. Tensors over 512 MiB are written as
several consecutive records with the same tag; they become one entry with
several chunks. An optional ``crc_num`` trailer (``save_checkpoint(crc_check=True)``)
is accepted.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError
from .tensor_source import TensorInfo, TensorSource

CKPT_DTYPES = {
    "Float32": "float32", "Float16": "float16", "BFloat16": "bfloat16", "Float64": "float64",
    "Int8": "int8", "UInt8": "uint8", "Int16": "int16", "UInt16": "uint16",
    "Int32": "int32", "UInt32": "uint32", "Int64": "int64", "UInt64": "uint64", "Bool": "bool",
}
_CRC_TRAILER = b"crc_num"
_CRC_TRAILER_LEN = len(_CRC_TRAILER) + 10


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
        elif wire == 1:
            pos += 8
            yield field, wire, None, pos
        elif wire == 5:
            pos += 4
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
            dtype = bytes(buf[a:b]).decode("utf-8", "replace")
        elif field == 3 and wire == 2:
            content = (a, b)
    return dims, dtype, content[0], content[1]


class CkptReader(TensorSource):
    """Index of a MindSpore ``.ckpt``; tensors are numpy views into an mmap."""

    format_name = "MindSpore checkpoint"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._index()

    def _index(self) -> None:
        buf, size = self._buf, self._size
        pos = 0
        last_tag = None
        try:
            while pos < size:
                if size - pos == _CRC_TRAILER_LEN and bytes(buf[pos:pos + 7]) == _CRC_TRAILER:
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
                        tag = bytes(buf[a:b]).decode("utf-8", "replace")
                    elif field == 2 and wire == 2:
                        tensor = _parse_tensor(buf, a, b)
                pos += length
                if tag is None or tensor is None:
                    continue  # map tensors and empty records are not model weights
                dims, type_name, c0, c1 = tensor
                self._add_chunk(tag, dims, type_name, c0, c1, same_as_last=(tag == last_tag))
                last_tag = tag
        except _Corrupt as exc:
            raise CheckpointError(
                f"{self.path} is truncated or corrupt ({exc} at byte {pos} of {size}). "
                "Download it again (checkpoint_download/ scripts resume and verify it)."
            ) from None
        self._check_sizes()

    def _add_chunk(self, tag, dims, type_name, c0, c1, same_as_last) -> None:
        dtype = CKPT_DTYPES.get(type_name)
        if dtype is None:
            raise _Corrupt(f"tensor {tag!r} has unknown type {type_name!r}")
        if same_as_last:
            info = self.tensors[tag]
            if list(info.shape) != dims or info.dtype != dtype:
                raise _Corrupt(f"tensor {tag!r} is split into records that disagree")
            info.chunks.append((c0, c1 - c0))
            return
        if tag in self.tensors:
            raise _Corrupt(f"tensor {tag!r} appears twice, not in consecutive records")
        self.tensors[tag] = TensorInfo(tag, dtype, tuple(dims), [(c0, c1 - c0)])

    def _check_sizes(self) -> None:
        for info in self.tensors.values():
            stored = sum(n for _, n in info.chunks)
            if stored != info.nbytes:
                raise CheckpointError(
                    f"{self.path} is corrupt: tensor {info.name!r} {list(info.shape)} {info.dtype} "
                    f"should hold {info.nbytes} bytes but holds {stored}. Download it again."
                )

