"""Memory-mapped safetensors reader (single file or HF shards) and writer, HF names mapped to ours.

The format is an 8-byte little-endian header length, a JSON header
``{name: {dtype, shape, data_offsets: [begin, end]}}`` and the raw data. We
read it without the ``safetensors`` package (and write it for the converted
built-in model) because it is 40 lines and keeps the engine free of torch.
Hugging Face ships big models as shards plus ``model.safetensors.index.json``
(``{"weight_map": {tensor name: shard file}}``); ``ShardedSafetensors`` maps
every shard and presents them as one source. A shard is a file beside the index: a name with a folder,
a drive or ``..`` in it is refused (an index from elsewhere must not make us map any file on the disk).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from engine.errors import CheckpointError, quote

from .dtypes import SAFETENSORS_FROM_NUMPY, SAFETENSORS_NAMES
from .names import hf_to_ours
from .tensor_source import MappedFile, TensorInfo, TensorSource


def _index_file(mapped: MappedFile, tensors: dict[str, TensorInfo]) -> list[str]:
    """Add a safetensors file's tensors (by our names) to ``tensors``; returns the names as stored."""
    buf, size = mapped.buffer, mapped.size
    if size < 8:
        raise ValueError("shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", buf[:8])
    if 8 + header_len > size:
        raise ValueError("header runs past the end of the file (truncated?)")
    header = json.loads(bytes(buf[8:8 + header_len]).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    base, stored = 8 + header_len, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_NAMES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {quote(name)} has unsupported dtype {quote(str(entry['dtype']))}")
        begin, end = (int(v) for v in entry["data_offsets"])
        if not 0 <= begin <= end or base + end > size:
            raise ValueError(f"tensor {quote(name)} runs past the end of the file (truncated?)")
        info = TensorInfo(hf_to_ours(name), dtype, tuple(int(d) for d in entry["shape"]), mapped,
                          [(base + begin, end - begin)])
        if info.nbytes != end - begin:
            raise ValueError(f"tensor {quote(name)} has {end - begin} bytes, its shape needs {info.nbytes}")
        if info.name in tensors:
            raise ValueError(f"tensor {quote(name)} appears twice")
        tensors[info.name] = info
        stored.append(name)
    return stored


def _is_plain_file_name(name) -> bool:
    """A file name alone (no folder, drive, ``..``), on Windows' rules as well as POSIX's."""
    return (isinstance(name, str) and name not in ("", ".", "..") and PureWindowsPath(name).name == name
            and PurePosixPath(name).name == name and ":" not in name)


def _refuse(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors file ({exc}). Download or convert it again.",
                           path=path,
                           code="safetensors_invalid", params={"path": path, "error": str(exc)})


class SafetensorsReader(TensorSource):
    """Index of one ``.safetensors`` file; names are reported in our (MindFormers) form."""

    format_name = "safetensors"

    def __init__(self, path: str | Path):
        super().__init__(path)
        mapped = self._open(self.path)

        def index():
            try:
                _index_file(mapped, self.tensors)
            except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
                raise _refuse(self.path, exc) from None
        self._index_or_close(index)


class ShardedSafetensors(TensorSource):
    """Several ``.safetensors`` shards listed by a HF ``*.safetensors.index.json``."""

    format_name = "sharded safetensors"

    def __init__(self, index_path: str | Path):
        super().__init__(index_path)
        self._index_or_close(self._index)

    def _index(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            weight_map = doc["weight_map"]
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError("its weight_map is empty")
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.path} is not a valid safetensors index ({exc}). It should be the "
                                  "model.safetensors.index.json that came with the shards.", path=self.path,
                                  code="safetensors_index_invalid",
                                  params={"path": self.path, "error": str(exc)}) from None
        shards = sorted(set(weight_map.values()), key=str)
        outside = next((s for s in shards if not _is_plain_file_name(s)), None)
        if outside is not None:
            raise CheckpointError(
                f"{self.path} names the shard {quote(str(outside))}, which is not a file name in its own folder: "
                "an index lists shards beside it (model-00001-of-00002.safetensors...) and nowhere else. "
                "Download the index again from the model's page.", path=self.path,
                code="safetensors_shard_outside", params={"path": self.path, "shard": str(outside)})
        missing = [s for s in shards if not (self.path.parent / s).is_file()]
        if missing:
            raise CheckpointError(
                f"{self.path} lists {len(shards)} shard files, but {len(missing)} are missing from "
                f"{self.path.parent} (e.g. {quote(missing[0])}). Download all of them into that folder.",
                path=self.path,
                code="safetensors_shards_missing",
                params={"path": self.path, "shards": len(shards), "missing": len(missing),
                        "folder": self.path.parent, "example": quote(missing[0])})
        for shard in shards:
            mapped = self._open(self.path.parent / shard)
            try:
                stored = _index_file(mapped, self.tensors)
            except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
                raise _refuse(mapped.path, exc) from None
            listed = {name for name, file in weight_map.items() if file == shard}
            absent = listed - set(stored)
            if absent:
                raise CheckpointError(
                    f"{mapped.path} lacks {len(absent)} tensors that {self.path.name} says it holds "
                    f"(e.g. {quote(sorted(absent)[0])}): the shard is from another download. Download it again.",
                    path=mapped.path,
                    code="safetensors_shard_incomplete",
                    params={"path": mapped.path, "absent": len(absent), "index": self.path.name,
                            "example": quote(sorted(absent)[0])})


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Write numpy arrays atomically (a partial file never has the real name)."""
    path = Path(path)
    header: dict = {"__metadata__": {k: str(v) for k, v in (metadata or {}).items()}}
    offset = 0
    for name, array in tensors.items():
        header[name] = {"dtype": SAFETENSORS_FROM_NUMPY[array.dtype.name], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    blob = json.dumps(header).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for array in tensors.values():
            f.write(np.ascontiguousarray(array).data)
    tmp.replace(path)
