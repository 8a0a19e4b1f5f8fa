"""Write our checkpoint's weights as a llama.cpp GGUF (F16, Q8_0 or Q4_0; other types by llama.cpp's own quantizer).

Only for the benchmark's peer: the values are the same (Q/K rows permuted into
llama.cpp's interleaved RoPE layout, as its own converter does), the
vocabulary is a placeholder of the right size (the benchmark feeds token ids,
never text). Tensors are added one at a time from the memory-mapped file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import load_config  # noqa: E402
from engine.weights.names import EMBEDDING, LM_HEAD, NORM_OUT, layer_name  # noqa: E402
from engine.weights.validation import open_weights  # noqa: E402

_GGUF_LAYER = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output", "w1": "ffn_gate",
               "w3": "ffn_up", "w2": "ffn_down", "attention_norm": "attn_norm", "ffn_norm": "ffn_norm"}


def permute_for_llama_cpp(w: np.ndarray, heads: int) -> np.ndarray:
    """Rotate-half rows -> llama.cpp's interleaved pairs (the inverse of builtin_model.unpermute_rope)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(w.shape)


def _vocabulary(size: int):
    tokens, types = ["<unk>", "<s>", "</s>"], [2, 3, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    tokens += [f"\u2581t{i}" for i in range(size - len(tokens))]
    types += [1] * (size - len(types))
    return tokens, [0.0] * size, types


def export(checkpoint: Path, config: Path, out: Path, kind: str = "F16") -> Path:
    import gguf

    cfg = load_config(config)
    qtypes = gguf.GGMLQuantizationType
    qtype = {"F16": qtypes.F16, "Q8_0": qtypes.Q8_0, "Q4_0": qtypes.Q4_0}[kind]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(cfg.seq_length)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.ffn_size)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.theta)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{kind}"))
    tokens, scores, types = _vocabulary(cfg.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    names = {EMBEDDING: "token_embd.weight", NORM_OUT: "output_norm.weight"}
    if not cfg.tie_word_embeddings:
        names[LM_HEAD] = "output.weight"
    for i in range(cfg.num_layers):
        for short, gname in _GGUF_LAYER.items():
            names[layer_name(i, short)] = f"blk.{i}.{gname}.weight"
    with open_weights(checkpoint) as source:
        for ours, theirs in names.items():
            w = source.float32(ours)
            if ours.endswith("attention.wq.weight"):
                w = permute_for_llama_cpp(w, cfg.num_heads)
            elif ours.endswith("attention.wk.weight"):
                w = permute_for_llama_cpp(w, cfg.kv_heads)
            if w.ndim == 1:
                writer.add_tensor(theirs, w)
            elif kind == "F16":
                writer.add_tensor(theirs, w.astype(np.float16))
            else:
                # Q4_0 keeps the output matrix in 8 bits, as our int4 does (llama.cpp's quantizer: Q6_K)
                kept = qtypes.Q8_0 if kind == "Q4_0" and theirs == "output.weight" else qtype
                writer.add_tensor(theirs, gguf.quants.quantize(w, kept), raw_dtype=kept)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def cached_gguf(checkpoint: Path, config: Path, kind: str, folder: Path, direct: bool = False) -> Path:
    """The GGUF copy of ``checkpoint`` in ``kind`` (F16, Q8_0, Q4_0, Q4_1, Q4_K_M), written once into ``folder``.

    Named after the source file's path, size and time, so two checkpoints that share a file name
    (``model.safetensors``) never share a copy. F16 and Q8_0 are written here; the other types by
    llama.cpp's quantizer (llama-cpp-python) from the F16 copy, as its own tools would. ``direct``
    writes Q4_0 here too, without the F16 copy (a 7-8B model's would take 16 GB of RAM while written,
    the writer holding every tensor): the same Q4_0 blocks, the output matrix in Q8_0 instead of Q6_K.
    """
    import ctypes
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    stat = checkpoint.stat()
    tag = hashlib.sha256(f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode("utf-8")).hexdigest()[:10]
    direct = direct and kind == "Q4_0"
    out = folder / f"{checkpoint.stem}-{tag}-{kind}{'-direct' if direct else ''}.gguf"
    if out.exists():
        return out
    print(f"writing {out.name} for llama.cpp (once) ...", file=sys.stderr)
    if kind in ("F16", "Q8_0") or direct:
        return export(checkpoint, config, out, kind)
    import llama_cpp

    source = cached_gguf(checkpoint, config, "F16", folder)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not quantize {source.name} to {kind}")
    return out
