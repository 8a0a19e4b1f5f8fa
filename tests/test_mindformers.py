"""The MindFormers backend (MindFormers' own LLaMA) against the numpy reference and our other backends.

Needs the optional extra (``python install.py --mindformers``); skipped with the
reason where it is not installed. Greedy tokens must agree exactly across
MindFormers, our executors and the numpy reference; logits to 1e-4 of their
largest magnitude (float32, different summation order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import reference_llama as ref
from fixtures import ROOT, assert_close, greedy_ids, make_executor

RTOL = 1e-4
LLAMA2_PROMPT = [1, 15, 300, 7, 999]
LLAMA3_PROMPT = [128000, 5, 17, 99_999, 2_000_000, 42]


def _mindformers_missing() -> str | None:
    from engine.backends.mindformers.mindformers_patches import unavailable_reason

    return unavailable_reason()


needs_mindformers = pytest.mark.skipif(_mindformers_missing() is not None,
                                       reason=f"{_mindformers_missing()} (optional extra)")


@pytest.fixture(scope="module")
def mf_llama2(llama2_tiny):
    ex = make_executor("mindformers", llama2_tiny[0], llama2_tiny[1], max_seq_len=160)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def mf_llama3(llama3_chunked):
    ex = make_executor("mindformers", llama3_chunked[0], llama3_chunked[1], max_seq_len=64)
    yield ex
    ex.close()


def _other_backend(name):
    """``name``, or skip when that executor cannot be imported or cannot run here."""
    from engine.backends.registry import get_backend

    try:
        reason = get_backend(name).executor_class().unavailable_reason("CPU")
    except ImportError as exc:
        reason = f"its module cannot be imported ({exc})"
    if reason:
        pytest.skip(f"the {name} executor: {reason}")
    return name


@needs_mindformers
@pytest.mark.parametrize("other", ["mindspore", "cpu"])
def test_llama2_fp16_greedy_agrees_with_reference_and_backend(llama2_tiny, mf_llama2, other):
    ckpt, yml, weights, spec = llama2_tiny
    other = _other_backend(other)
    want = ref.greedy(weights, spec.hp, LLAMA2_PROMPT, 16)
    assert greedy_ids(mf_llama2, LLAMA2_PROMPT, 16) == want
    ex = make_executor(other, ckpt, yml, max_seq_len=160)
    try:
        assert greedy_ids(ex, LLAMA2_PROMPT, 16) == want
    finally:
        ex.close()


@needs_mindformers
@pytest.mark.parametrize("other", ["mindspore", "cpu"])
def test_llama3_bf16_gqa_greedy_agrees_with_reference_and_backend(llama3_chunked, mf_llama3, other):
    ckpt, yml, weights, spec = llama3_chunked
    other = _other_backend(other)
    assert_close(mf_llama3.prefill(LLAMA3_PROMPT, 0), ref.forward(weights, spec.hp, LLAMA3_PROMPT)[-1], RTOL)
    want = ref.greedy(weights, spec.hp, LLAMA3_PROMPT, 6)
    assert greedy_ids(mf_llama3, LLAMA3_PROMPT, 6) == want
    ex = make_executor(other, ckpt, yml, max_seq_len=64)
    try:
        assert greedy_ids(ex, LLAMA3_PROMPT, 6) == want
    finally:
        ex.close()


@needs_mindformers
def test_prompt_in_several_chunks_and_from_a_cached_prefix(llama2_tiny, mf_llama2):
    """150 tokens are three chunks; a later prefill at start_pos reuses the cache (prefix reuse is real)."""
    ckpt, yml, weights, spec = llama2_tiny
    ids = [int(i) for i in np.random.default_rng(1).integers(0, spec.vocab, 150)]
    assert_close(mf_llama2.prefill(ids, 0), ref.forward(weights, spec.hp, ids)[-1], RTOL)
    mf_llama2.prefill(ids[:70], 0)
    assert_close(mf_llama2.prefill(ids[70:90], 70), ref.forward(weights, spec.hp, ids[:90])[-1], RTOL)
    assert type(mf_llama2).supports_prefix_reuse


class _SetAfter(threading.Event):
    """An event that reads as set from its ``n``-th check on: a Stop pressed mid-prefill."""

    def __init__(self, n):
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self):
        self.checks += 1
        return self.checks >= self.n


@needs_mindformers
def test_stop_between_prefill_chunks(mf_llama2):
    from engine.backends.executor import PrefillCancelled

    with pytest.raises(PrefillCancelled) as stopped:
        mf_llama2.prefill(list(range(3, 153)), 0, cancel=_SetAfter(2))
    assert stopped.value.computed == 64


@needs_mindformers
def test_run_model_backend_mindformers_with_a_real_tokenizer(llama2_tiny, llama2_model, tmp_path):
    """Also: MindFormers writes nothing into the working folder (its logs go to the user-data folder)."""
    ckpt, yml, weights, spec = llama2_tiny
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3", LLAMA_DESK_HOME=str(home))
    env.pop("LOCAL_DEFAULT_PATH", None)
    env.pop("LOG_MF_PATH", None)
    result = subprocess.run([sys.executable, str(ROOT / "run_model.py"), "-V", "2", "-C", str(yml), "-M", str(ckpt),
                             "-F", str(llama2_model), "--backend", "mindformers", "--prompt", "Hello, 世界",
                             "--greedy", "--max-new-tokens", "8", "--json"], capture_output=True, text=True,
                            encoding="utf-8", env=env, cwd=work, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(work.iterdir()) == []
    assert any((home / "logs" / "mindformers").rglob("*.log"))
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["model"]["executor"] == "mindformers"
    want = ref.greedy(weights, spec.hp, out["prompt_ids"], 8, stop={spec.eos})
    assert out["output_ids"] == [t for t in want if t != spec.eos][:8]
    assert "Traceback" not in result.stderr


def test_other_versions_are_refused_with_the_install_command(monkeypatch):
    from engine.backends.mindformers import mindformers_patches as patches

    monkeypatch.setattr(patches, "installed_version", lambda: "1.3.2")
    reason = patches.unavailable_reason()
    assert "1.3.2" in reason and "2.0.0" in reason and "python install.py --mindformers" in reason
    monkeypatch.setattr(patches, "installed_version", lambda: None)
    assert "not installed" in patches.unavailable_reason()


def test_gpu_and_int8_are_refused(llama2_tiny):
    from engine.backends.mindformers.mindformers_executor import MindFormersExecutor
    from engine.backends.registry import resolve
    from engine.errors import EngineError

    with pytest.raises(EngineError, match="CPU only"):
        resolve("mindformers", "gpu")
    assert "CPU only" in MindFormersExecutor.unavailable_reason("GPU")
    if _mindformers_missing() is None:
        with pytest.raises(EngineError, match="int8"):
            make_executor("mindformers", llama2_tiny[0], llama2_tiny[1], weight_format="int8")


@needs_mindformers
def test_mindformers_own_prefill_attention_agrees_with_our_kernels(llama2_tiny, mf_llama2):
    """The backend's attention and RoPE are our CPU stand-ins for Ascend kernels; MindFormers' standard
    (non-chunked) prefill computes attention with its own plain ops. Both must give the same logits."""
    import mindspore as ms
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
    from mindspore.nn.utils import no_init_parameters

    from engine.backends.mindformers.mindformers_config import BLOCK_SIZE, mindformers_settings, yaml_model_config
    from engine.config import load_config

    ckpt, yml, weights, spec = llama2_tiny
    settings = mindformers_settings(load_config(yml), yaml_model_config(yml), 64, LlamaConfig)
    settings["chunk_prefill"] = False
    with no_init_parameters():
        net = LlamaForCausalLM(LlamaConfig(**settings))
    for name, param in net.parameters_and_names():
        value = np.zeros(param.shape, np.float32) if name.endswith("_cache") else weights[name]
        param.set_data(ms.Tensor(np.ascontiguousarray(value, dtype=np.float32)))
    prompt = LLAMA2_PROMPT
    ids = np.zeros((1, 64), np.int32)      # static shapes: padded to seq_length, as MindFormers does
    ids[0, :len(prompt)] = prompt
    slots = np.where(np.arange(64) < len(prompt), np.arange(64), -1).astype(np.int32)
    logits, _, _ = net(ms.Tensor(ids), batch_valid_length=ms.Tensor(np.array([len(prompt)], np.int32)),
                       block_tables=ms.Tensor(np.arange(64 // BLOCK_SIZE, dtype=np.int32).reshape(1, -1)),
                       slot_mapping=ms.Tensor(slots))
    assert_close(mf_llama2.prefill(prompt, 0), logits.asnumpy().reshape(-1), RTOL)
