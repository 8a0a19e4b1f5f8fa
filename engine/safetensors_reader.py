"""Memory-mapped safetensors reader and writer, with HF LLaMA names mapped to ours.

The format is an 8-byte little-endian header length, a JSON header
``{name: {dtype, shape, data_offsets: [begin, end]}}`` and the raw data. We
read it without the ``safetensors`` package (and write it for the converted
built-in model) because it is 40 lines and keeps the engine free of torch.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .tensor_source import TensorInfo, TensorSource

ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
             "I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16", "I32": "int32",
             "U32": "uint32", "I64": "int64", "U64": "uint64", "BOOL": "bool"}
_ST_NAMES = {v: k for k, v in ST_DTYPES.items()}

_HF_LAYER = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}
_HF_TOP = {"model.embed_tokens.weight": "model.tok_embeddings.embedding_weight",
           "model.norm.weight": "model.norm_out.weight", "lm_head.weight": "lm_head.weight"}
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")


def hf_to_ours(name: str) -> str:
    """Map a HF transformers LLaMA tensor name to the MindFormers one (others unchanged)."""
    if name in _HF_TOP:
        return _HF_TOP[name]
    match = _HF_LAYER_RE.match(name)
    if match and match.group(2) in _HF_LAYER:
        return f"model.layers.{match.group(1)}.{_HF_LAYER[match.group(2)]}.weight"
    return name


class SafetensorsReader(TensorSource):
    """Index of a ``.safetensors`` file; names are reported in our (MindFormers) form."""

    format_name = "safetensors"

    def __init__(self, path: str | Path):
        super().__init__(path)
        try:
            self._index()
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise CheckpointError(
                f"{self.path} is not a valid safetensors file ({exc}). Download or convert it again."
            ) from None

    def _index(self) -> None:
        if self._size < 8:
            raise ValueError("shorter than its 8-byte header length")
        (header_len,) = struct.unpack("<Q", self._buf[:8])
        if 8 + header_len > self._size:
            raise ValueError("header runs past the end of the file (truncated?)")
        header = json.loads(bytes(self._buf[8:8 + header_len]).decode("utf-8"))
        base = 8 + header_len
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = ST_DTYPES[entry["dtype"]]
            begin, end = entry["data_offsets"]
            if base + end > self._size:
                raise ValueError(f"tensor {name!r} runs past the end of the file (truncated?)")
            info = TensorInfo(hf_to_ours(name), dtype, tuple(entry["shape"]), [(base + begin, end - begin)])
            if info.nbytes != end - begin:
                raise ValueError(f"tensor {name!r} has {end - begin} bytes, its shape needs {info.nbytes}")
            self.tensors[info.name] = info


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Write float32/float16 numpy arrays atomically (a partial file never has the real name)."""
    path = Path(path)
    header: dict = {"__metadata__": {k: str(v) for k, v in (metadata or {}).items()}}
    offset = 0
    for name, array in tensors.items():
        header[name] = {"dtype": _ST_NAMES[array.dtype.name], "shape": list(array.shape),
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
