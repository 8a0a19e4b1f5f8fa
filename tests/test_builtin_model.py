"""The built-in SmolLM2-135M-Instruct against a numpy forward of the original GGUF.

The reference dequantizes the GGUF itself (with the ``gguf`` package), undoes
llama.cpp's RoPE row interleaving with its own index arithmetic, and decodes
tokens from the GGUF's own token list: nothing is shared with ``engine``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import reference_llama as ref
from assets import require_asset
from fixtures import run_cli
from model_factory import CACHE

QUESTION = "What is the capital of France?"


def _gguf_reference(path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    meta = {k: reader.fields[k].contents() for k in reader.fields if not k.startswith("tokenizer.ggml.")}
    heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    names = {"attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv",
             "attn_output": "attention.wo", "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2",
             "ffn_up": "feed_forward.w3", "attn_norm": "attention_norm", "ffn_norm": "ffn_norm"}
    weights = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in t.shape[::-1]])
        part = t.name.split(".")
        if t.name == "token_embd.weight":
            weights["model.tok_embeddings.embedding_weight"] = w
        elif t.name == "output_norm.weight":
            weights["model.norm_out.weight"] = w
        else:
            if part[2] in ("attn_q", "attn_k"):
                n = heads if part[2] == "attn_q" else kv_heads
                hd = w.shape[0] // n
                # GGUF row 2*i + j of a head holds rotate-half row j*hd/2 + i
                order = [2 * i + j for j in (0, 1) for i in range(hd // 2)]
                w = np.concatenate([w[h * hd:(h + 1) * hd][order] for h in range(n)])
            weights[f"model.layers.{part[1]}.{names[part[2]]}.weight"] = w
    hp = dict(dim=meta["llama.embedding_length"], layers=meta["llama.block_count"], heads=heads,
              kv_heads=kv_heads, eps=1e-5, theta=meta["llama.rope.freq_base"], tied=True)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    return weights, hp, tokens


def _gpt2_decode(tokens, ids):
    """Byte-level BPE decoding from the GGUF token strings (GPT-2's byte-to-unicode table)."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    data = bytearray()
    for i in ids:
        tok = tokens[i]
        if tok.startswith("<|") and tok.endswith("|>"):
            data += tok.encode()
        else:
            data += bytes(table[c] for c in tok)
    return data.decode("utf-8", "replace")


@pytest.fixture(scope="session")
def builtin_home():
    require_asset("smollm2-gguf")
    home = CACHE / "home"
    home.mkdir(parents=True, exist_ok=True)
    return home


def test_builtin_answers_the_france_question_like_the_numpy_reference(builtin_home):
    gguf_path = require_asset("smollm2-gguf")
    # weights as stored (fp16): the reference computes with exactly those values
    result = run_cli("run_model.py", "--builtin", "--prompt", QUESTION, "--greedy", "--max-new-tokens", "24",
                     "--quantize", "none", "--json", home=builtin_home,
                     env_extra={"LLAMA_DESK_BUILTIN_GGUF": gguf_path})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    weights, hp, tokens = _gguf_reference(gguf_path)
    prompt_text = _gpt2_decode(tokens, out["prompt_ids"])
    assert prompt_text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                           f"<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    eos = 2  # <|im_end|>
    want = ref.greedy(weights, hp, out["prompt_ids"], 24, stop={eos})
    assert out["output_ids"] + [eos] == want
    assert _gpt2_decode(tokens, out["output_ids"]) == "The capital of France is Paris."
    assert out["text"] == "The capital of France is Paris."
    assert out["stats"]["finish_reason"] == "stop"


def test_run_model_without_a_checkpoint_falls_back_to_the_builtin_model(builtin_home, tmp_path):
    gguf_path = require_asset("smollm2-gguf")
    # an empty models folder: a real LLaMA2 in checkpoint_download/ must not be loaded by this test.
    # --quantize none: the default 4-bit blocks with 8-bit activations answer this question as llama.cpp
    # does from the same file ("L'Étoile, la Cité, ..."), not with "Paris" (a 135M model's greedy flip).
    result = run_cli("run_model.py", "--prompt", QUESTION, "--greedy", "--max-new-tokens", "12",
                     "--quantize", "none", home=builtin_home, env_extra={"LLAMA_DESK_BUILTIN_GGUF": gguf_path,
                                                   "LLAMA_DESK_MODELS_DIR": tmp_path})
    assert result.returncode == 0, result.stderr[-2000:]
    script = "download.cmd" if os.name == "nt" else "download.sh"
    assert f"No LLaMA2 checkpoint at {tmp_path / 'llama2' / 'llama2_7b.ckpt'}" in result.stderr
    assert "built-in" in result.stderr and script in result.stderr
    assert "Paris" in result.stdout


def test_wrong_builtin_file_and_leftover_half_conversion(tmp_path, monkeypatch):
    from engine.builtin_model import FOLDER_NAME, builtin_model_dir
    from engine.errors import CheckpointError

    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path))
    half = tmp_path / "models" / FOLDER_NAME
    half.mkdir(parents=True)
    (half / "model.safetensors").write_bytes(b"half")  # no .complete marker: an interrupted conversion
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setenv("LLAMA_DESK_BUILTIN_GGUF", str(fake))
    with pytest.raises(CheckpointError, match="checksum differs"):
        builtin_model_dir()
    monkeypatch.setenv("LLAMA_DESK_BUILTIN_GGUF", str(require_asset("smollm2-gguf")))
    folder = builtin_model_dir()
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").stat().st_size > 250_000_000
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [FOLDER_NAME]


def test_a_conversion_in_an_older_format_is_replaced_not_reused(tmp_path, monkeypatch):
    from engine.builtin_model import FOLDER_NAME, FORMAT_VERSION, builtin_model_dir
    from engine.weights.safetensors_reader import SafetensorsReader

    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path))
    monkeypatch.setenv("LLAMA_DESK_BUILTIN_GGUF", str(require_asset("smollm2-gguf")))
    old = tmp_path / "models" / FOLDER_NAME
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"an older format")
    (old / ".complete").write_text("1", encoding="utf-8")  # finished, but in format 1 (float32)
    folder = builtin_model_dir()
    assert (folder / ".complete").read_text(encoding="utf-8") == FORMAT_VERSION
    with SafetensorsReader(folder / "model.safetensors") as reader:
        assert reader.tensors["model.layers.0.attention.wq.weight"].dtype == "float16"
