"""run_model.py as users run it (subprocess), on real checkpoints, and its refusals of bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from fixtures import run_cli


def _json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _refused(result, *needles):
    """Exit code 2, one readable message, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr[-3000:]


def test_prompt_ids_greedy_matches_reference_llama2_fp16(llama2_tiny):
    ckpt, yml, weights, spec = llama2_tiny
    prompt = [1, 15, 300, 7, 999]
    out = _json(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--prompt-ids", ",".join(map(str, prompt)),
                        "--greedy", "--max-new-tokens", "12", "--json"))
    assert out["prompt_ids"] == prompt
    assert out["output_ids"] == ref.greedy(weights, spec.hp, prompt, 12, stop={spec.eos})[:12]
    stats = out["stats"]
    for key in ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes"):
        assert stats[key] > 0, key


def test_prompt_ids_greedy_matches_reference_llama3_bf16_chunked(llama3_chunked):
    ckpt, yml, weights, spec = llama3_chunked
    prompt = [spec.bos, 9906, 1917, 2_099_999]
    out = _json(run_cli("run_model.py", "-V", "3", "-C", yml, "-M", ckpt, "--prompt-ids", ",".join(map(str, prompt)),
                        "--greedy", "--max-new-tokens", "6", "--json"))
    assert out["output_ids"] == ref.greedy(weights, spec.hp, prompt, 6, stop={spec.eos})[:6]
    # the whole point of the zero-copy loader: ~1 GB of bf16 becomes ~2 GB of float32, not 2x more
    weight_bytes = out["model"]["weight_bytes"]
    assert weight_bytes > 1_000_000_000


def test_text_prompt_with_the_real_llama2_tokenizer(llama2_tiny, llama2_model):
    ckpt, yml, weights, spec = llama2_tiny
    out = _json(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", llama2_model, "--raw",
                        "--prompt", "Hello world", "--greedy", "--max-new-tokens", "5", "--json"))
    assert out["prompt_ids"] == [1, 15043, 3186]
    assert out["output_ids"] == ref.greedy(weights, spec.hp, [1, 15043, 3186], 5, stop={spec.eos})[:5]
    assert isinstance(out["text"], str)


def test_fast_tokenizer_gives_the_same_chat_prompt(llama2_tiny, llama2_model):
    ckpt, yml, _, _ = llama2_tiny
    args = ["-V", "2", "-C", yml, "-M", ckpt, "-F", llama2_model, "--prompt", "你好，世界", "--greedy",
            "--max-new-tokens", "3", "--json"]
    slow, fast = _json(run_cli("run_model.py", *args)), _json(run_cli("run_model.py", *args, "--fast"))
    assert slow["prompt_ids"] == fast["prompt_ids"] and slow["output_ids"] == fast["output_ids"]
    assert slow["prompt_ids"][:4] == [1, 518, 25580, 29962]  # "<s>[INST]" by LLaMA2's real vocabulary


def test_llama3_chat_prompt_uses_header_ids(llama3_chunked, llama3_model):
    ckpt, yml, _, _ = llama3_chunked
    out = _json(run_cli("run_model.py", "-V", "3", "-C", yml, "-M", ckpt, "-F", llama3_model, "--fast",
                        "--prompt", "Hello world", "--greedy", "--max-new-tokens", "2", "--json"))
    assert out["prompt_ids"][:2] == [128000, 128006]
    assert out["prompt_ids"][-3:] == [78191, 128007, 271]  # "assistant", end_header, "\n\n"


def test_interactive_chat_streams_and_exits(llama2_tiny, llama2_model):
    ckpt, yml, _, _ = llama2_tiny
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", llama2_model, "--max-new-tokens", "4",
                     "--seed", "1", stdin="Hello\n你好\n/exit\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("first token after") == 2  # one stats line per answer


def test_wrong_version_checkpoint_is_refused_before_loading(llama2_tiny, tmp_path):
    ckpt = llama2_tiny[0]
    yml3 = mf.write_yaml(mf.LLAMA3_CHUNKED, tmp_path / "v3.yaml")
    _refused(run_cli("run_model.py", "-V", "3", "-C", yml3, "-M", ckpt, "--prompt-ids", "1,2"),
             "does not match", "shape", str(ckpt.name))


def test_real_llama_configs_refuse_a_tiny_checkpoint_with_a_hint(llama2_tiny):
    _refused(run_cli("run_model.py", "-V", "2", "-C", "configs/predict_llama2_7b.yaml", "-M", llama2_tiny[0],
                     "--prompt-ids", "1,2"), "expects 32 layers", "2 layers")


def test_truncated_checkpoint_is_refused(llama2_tiny, tmp_path):
    data = llama2_tiny[0].read_bytes()
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    _refused(run_cli("run_model.py", "-V", "2", "-C", llama2_tiny[1], "-M", bad, "--prompt-ids", "1,2"),
             "cut.ckpt", "Download it again")


def test_missing_files_say_how_to_get_them(llama2_tiny, tmp_path):
    script = "download.cmd" if os.name == "nt" else "download.sh"  # the command line names its own platform's
    _refused(run_cli("run_model.py", "-V", "2", "-C", llama2_tiny[1], "-M", tmp_path / "nope.ckpt", "--prompt", "hi"),
             "not found", "-M", script)
    _refused(run_cli("run_model.py", "-V", "2", "-C", llama2_tiny[1], "-M", llama2_tiny[0], "-F",
                     tmp_path / "nope.model", "--prompt", "hi"), "Tokenizer not found", "-F", script)
    _refused(run_cli("run_model.py", "-V", "2", "-C", tmp_path / "nope.yaml", "-M", llama2_tiny[0],
                     "--prompt-ids", "1"), "Config file not found")


def test_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path, llama2_model):
    spec = mf.TinySpec("small_vocab", dim=32, layers=1, heads=2, kv_heads=2, vocab=500, ffn=64, theta=1e4,
                       dtype="float16")
    ckpt = tmp_path / "small.ckpt"
    mf.write_ckpt(spec, mf.make_weights(spec), ckpt)
    yml = mf.write_yaml(spec, tmp_path / "small.yaml")
    _refused(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", llama2_model, "--prompt", "hi"),
             "32000 tokens", "vocabulary is 500")


def test_wrong_kind_of_tokenizer_file_is_refused(llama2_tiny, llama3_model):
    _refused(run_cli("run_model.py", "-V", "2", "-C", llama2_tiny[1], "-M", llama2_tiny[0], "-F", llama3_model,
                     "--prompt", "hi"), str(llama3_model.name))


def test_empty_prompt_and_bad_ids_are_refused(llama2_tiny):
    base = ["-V", "2", "-C", llama2_tiny[1], "-M", llama2_tiny[0]]
    _refused(run_cli("run_model.py", *base, "--prompt", "   "), "empty")
    _refused(run_cli("run_model.py", *base, "--prompt-ids", "1,x"), "comma-separated whole numbers")
    _refused(run_cli("run_model.py", *base, "--prompt-ids", "1,32000"), "between 0 and 31999")


def test_prompt_longer_than_the_context_is_refused(llama2_tiny):
    ckpt, yml, _, spec = llama2_tiny
    ids = ",".join(str(i) for i in np.arange(spec.seq_length + 10) % 1000 + 3)
    _refused(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--prompt-ids", ids), "context")


def test_invalid_yaml_value_is_named(tmp_path, llama2_tiny):
    yml = mf.write_yaml(mf.LLAMA2_TINY, tmp_path / "bad.yaml", num_heads="many")
    _refused(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", llama2_tiny[0], "--prompt-ids", "1"),
             "bad.yaml", "num_heads")


def test_model_that_does_not_fit_in_memory_is_refused_before_loading(llama3_chunked, tmp_path):
    ckpt, _, weights, spec = llama3_chunked
    yml = mf.write_yaml(spec, tmp_path / "huge_context.yaml", seq_length=100_000_000)  # a 100 GB KV cache
    result = run_cli("run_model.py", "-V", "3", "-C", yml, "-M", ckpt, "--backend", "mindspore", "--prompt-ids", "1,2")
    # the backend and its numbers: float32 weights (MindSpore's CPU kernels), float32 K and V per position
    float32_weights = sum(a.size for a in weights.values()) * 4 / 1e9
    kv_cache = spec.layers * 2 * spec.kv_heads * (spec.dim // spec.heads) * 100_000_000 * 4 / 1e9
    _refused(result, f"{ckpt.name} with the mindspore backend needs about", f"{float32_weights:.1f} GB weights",
             f"{kv_cache:.1f} GB KV cache", "float32", "GB is free")
    assert len(result.stderr.strip().splitlines()) == 1


def test_hf_named_safetensors_checkpoint_runs_like_the_ckpt(llama2_tiny, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    ckpt, yml, weights, spec = llama2_tiny
    hf = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight",
          "model.norm_out.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}
    parts = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
             "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
             "feed_forward.w3": "mlp.up_proj", "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    tensors = {}
    for name, value in weights.items():
        new = hf.get(name, name)
        for ours, theirs in parts.items():
            new = new.replace(f".{ours}.", f".{theirs}.")
        tensors[new] = value.astype(np.float16) if value.ndim == 2 else value
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tensors, str(path))
    prompt = [1, 15, 300, 7]
    out = _json(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", path, "--prompt-ids", ",".join(map(str, prompt)),
                        "--greedy", "--max-new-tokens", "8", "--json"))
    assert out["output_ids"] == ref.greedy(weights, spec.hp, prompt, 8, stop={spec.eos})[:8]
