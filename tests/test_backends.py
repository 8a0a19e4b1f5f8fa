"""Choosing what runs the model: backend and device names, the MindSpore executor's memory estimate and
the refusal built from it, and where MindSpore's own dumps and logs go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import model_factory as mf
import reference_llama as ref
from engine import EngineError, ModelSource, backend_names, load_engine
from engine.backends.devices import gpu_unavailable_reason
from engine.backends.registry import ExecutorOptions, get_backend
from engine.config import load_config
from fixtures import ROOT, compile_cache_env, error_line, run_cli

PROMPT = [1, 15, 300, 7]
GB = 1e9


def test_unknown_backend_is_refused_listing_the_available_ones(llama2_tiny):
    ckpt, yml, _, _ = llama2_tiny
    assert backend_names() == ["cpu", "mindspore", "mindformers"]
    listing = "Unknown backend 'nope'. Available: auto, cpu, mindspore, mindformers."
    with pytest.raises(EngineError) as refused:
        load_engine(ModelSource(version=2, config=yml, checkpoint=ckpt, need_tokenizer=False),
                    ExecutorOptions(backend="nope"))
    assert str(refused.value) == listing
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--prompt-ids", "1,2", "--backend", "nope")
    assert listing in error_line(result)


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a usable GPU")
def test_gpu_that_cannot_be_used_is_refused_with_a_plain_reason(llama2_tiny):
    ckpt, yml, _, _ = llama2_tiny
    with pytest.raises(EngineError, match="Cannot use a GPU: ") as refused:
        load_engine(ModelSource(version=2, config=yml, checkpoint=ckpt, need_tokenizer=False),
                    ExecutorOptions(backend="mindspore", device="gpu"))
    assert gpu_unavailable_reason() in str(refused.value)
    line = error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--prompt-ids", "1,2",
                              "--device", "gpu"))
    assert "Cannot use a GPU: " in line and "C++" not in line and "----" not in line and len(line) < 400


def test_device_auto_runs_on_the_cpu_here(llama2_tiny, cli_compile_cache):
    ckpt, yml, weights, spec = llama2_tiny
    if gpu_unavailable_reason() is None:
        pytest.skip("this machine has a usable GPU: auto would choose it")
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--backend", "mindspore", "--device", "auto",
                     "--prompt-ids", ",".join(map(str, PROMPT)), "--greedy", "--max-new-tokens", "6", "--json",
                     env_extra=compile_cache_env(cli_compile_cache, yml))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["model"]["executor"], out["model"]["device"]) == ("mindspore", "CPU")
    assert out["output_ids"] == ref.answer(weights, spec.hp, PROMPT, 6, stop={spec.eos})


# -- memory ------------------------------------------------------------------

def _llama_params(hidden, layers, vocab, ffn, kv_dim):
    """Meta's LLaMA parameter count: embeddings and lm_head, then per layer q/o, k/v, the three FFN, two norms."""
    per_layer = 2 * hidden * hidden + 2 * kv_dim * hidden + 3 * hidden * ffn + 2 * hidden
    return 2 * vocab * hidden + layers * per_layer + hidden


def test_mindspore_estimate_for_a_7b_model_is_float32_weights_plus_kv_cache():
    cfg = load_config(ROOT / "configs" / "predict_llama2_7b.yaml")
    params = _llama_params(4096, 32, 32000, 11008, 4096)
    assert params == 6_738_415_616
    estimate = get_backend("mindspore").executor_class().estimate_memory
    need = estimate(cfg, None, ExecutorOptions(max_seq_len=4096, device="CPU"))
    assert need.weights == params * 4 and round(need.weights / GB) == 27  # MindSpore's CPU kernels: float32 only
    kv_per_position = 32 * 2 * 32 * 128 * 4
    assert 4096 * kv_per_position <= need.kv_cache <= 4200 * kv_per_position
    assert need.total == need.weights + need.kv_cache + need.overhead and need.overhead > 0
    assert "float32" in need.description
    short = estimate(cfg, None, ExecutorOptions(max_seq_len=1024, device="CPU"))
    assert short.weights == need.weights and short.kv_cache < need.kv_cache / 3
    gpu = ExecutorOptions(max_seq_len=4096, device="GPU", weight_format="stored")
    assert estimate(cfg, None, gpu).weights == params * 2  # float16
    with pytest.raises(EngineError, match="int8"):
        estimate(cfg, None, ExecutorOptions(max_seq_len=4096, device="CPU", weight_format="int8"))


def test_memory_refusal_names_the_backend_and_the_numbers(llama2_tiny, tmp_path):
    ckpt, _, _, spec = llama2_tiny
    yml = mf.write_yaml(spec, tmp_path / "huge_context.yaml", seq_length=100_000_000)  # a 100 GB KV cache
    with pytest.raises(EngineError) as refused:
        load_engine(ModelSource(version=2, config=yml, checkpoint=ckpt, need_tokenizer=False),
                    ExecutorOptions(backend="mindspore"))
    message = str(refused.value)
    weights = _llama_params(spec.dim, spec.layers, spec.vocab, spec.ffn, spec.dim) * 4
    kv = spec.layers * 2 * spec.dim * 4 * 100_000_000
    assert refused.value.subject == "memory"
    assert f"{ckpt.name} with the mindspore backend needs about" in message
    assert f"{weights / GB:.1f} GB weights" in message and f"{kv / GB:.1f} GB KV cache" in message
    assert "float32" in message and "GB is free" in message
    assert "--" not in message


# -- MindSpore's own files ----------------------------------------------------

BROKEN_GRAPH = textwrap.dedent("""
    import os, sys
    import numpy as np
    import engine
    from engine.backends.registry import ExecutorOptions, get_backend
    from engine.config import load_config
    from engine.weights.validation import open_weights

    cfg = load_config(sys.argv[1])
    options = ExecutorOptions(max_seq_len=64, device="CPU")
    get_backend("mindspore").executor_class()(cfg, open_weights(sys.argv[2]), options)
    import mindspore as ms

    @ms.jit
    def broken(x, y):
        return ms.ops.matmul(x, y)

    try:
        broken(ms.Tensor(np.ones((2, 3), np.float32)), ms.Tensor(np.ones((4, 5), np.float32)))
    except (RuntimeError, ValueError, TypeError):
        pass
    print(engine.__file__)
    print(os.environ["MS_DEV_SAVE_GRAPHS_PATH"])
    print(os.environ["GLOG_log_dir"])
""")


def test_mindspore_dumps_and_logs_go_to_the_user_data_folder(llama2_tiny, tmp_path):
    """A graph that fails to compile makes MindSpore write rank_0/om/analyze_fail.ir: never in the user's folder."""
    ckpt, yml, _, _ = llama2_tiny
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MS_OM_PATH", "MS_DEV_SAVE_GRAPHS_PATH", "GLOG_log_dir")}
    env.update(LLAMA_DESK_HOME=str(home), PYTHONPATH=str(ROOT), GLOG_v="3")
    script = tmp_path / "broken_graph.py"  # MindSpore compiles only functions whose source file it can read
    script.write_text(BROKEN_GRAPH, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(yml), str(ckpt)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    engine_file, graphs, logs = done.stdout.strip().splitlines()[-3:]
    assert Path(engine_file).is_relative_to(ROOT)  # this tree's engine, not an installed one
    assert Path(graphs).is_relative_to(home) and Path(logs).is_relative_to(home)
    assert list(work.iterdir()) == []  # no rank_0 where the user ran the program
    assert list(home.rglob("analyze_fail.ir")), sorted(map(str, home.rglob("*")))[:20]


def test_rank_0_dumps_are_ignored_and_not_in_the_repository():
    ignored = subprocess.run(["git", "check-ignore", "-q", "rank_0/om/analyze_fail.ir"], cwd=ROOT)
    assert ignored.returncode == 0
    tracked = subprocess.run(["git", "ls-files", "rank_0"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.returncode == 0 and tracked.stdout == ""
