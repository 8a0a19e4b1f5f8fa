"""Session fixtures for model tests: real MindSpore checkpoints and loaded executors.

Checkpoints are written once per machine into the test cache (model_factory);
executors are built once per session, because graph compilation takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import model_factory as mf

ROOT = Path(__file__).resolve().parent.parent
# Converted built-in models and settings go to the test cache, never the user's real folder.
os.environ.setdefault("LLAMA_DESK_HOME", str(mf.CACHE / "home"))
# Every load quantizes (the quantizer is what those tests check); tests/test_weight_cache.py turns the kept
# quantized weights on for itself.
os.environ.setdefault("LLAMA_DESK_WEIGHT_CACHE_GB", "0")


@pytest.fixture(scope="session")
def llama2_tiny():
    """(ckpt, yaml, weights, spec) of the LLaMA2-shaped float16 MHA model."""
    ckpt, yml, weights = mf.cached_model(mf.LLAMA2_TINY)
    return ckpt, yml, weights, mf.LLAMA2_TINY


@pytest.fixture(scope="session")
def llama3_chunked():
    """(ckpt, yaml, weights, spec) of the LLaMA3-shaped bfloat16 GQA model with split records."""
    ckpt, yml, weights = mf.cached_model(mf.LLAMA3_CHUNKED)
    return ckpt, yml, weights, mf.LLAMA3_CHUNKED


def make_executor(backend: str, ckpt, yml, *, max_seq_len=None, weight_format="stored", threads=None,
                  kv_cache="float16", parallel=1, weight_cache_gb=None):
    """An executor from the registry, built the way load_engine builds it (it owns the source)."""
    from engine.backends.registry import ExecutorOptions, get_backend
    from engine.config import load_config
    from engine.weights.validation import open_weights, validate_weights

    cfg = load_config(yml)
    source = open_weights(ckpt)
    validate_weights(source, cfg)
    options = ExecutorOptions(max_seq_len=max_seq_len or cfg.seq_length, device="CPU",
                              weight_format=weight_format, threads=threads, kv_cache=kv_cache,
                              config_path=Path(yml), parallel=parallel, weight_cache_gb=weight_cache_gb)
    return get_backend(backend).executor_class()(cfg, source, options)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_engine(executor, tokenizer=None, template=None, name: str = "test model"):
    """The public ChatEngine around an executor from ``make_executor``: its graphs compile on first use only,
    where ``load_engine`` compiles all of them up front (seconds each), for tests that need one or two."""
    from engine import ChatEngine, ModelInfo

    info = ModelInfo(name=name, version=None, checkpoint=None, tokenizer=getattr(tokenizer, "name", None),
                     template=getattr(template, "name", None), executor=executor.name)
    return ChatEngine(executor, tokenizer, template, info)


@pytest.fixture(scope="session")
def llama2_executor(llama2_tiny):
    return make_executor("mindspore", llama2_tiny[0], llama2_tiny[1])


@pytest.fixture(scope="session")
def llama3_executor(llama3_chunked):
    return make_executor("mindspore", llama3_chunked[0], llama3_chunked[1])


@pytest.fixture(scope="session")
def llama2_engine(llama2_tiny, spm_model):
    """The LLaMA2-shaped tiny model (vocabulary 32000) with the 1000-piece SentencePiece tokenizer, on MindSpore.

    Shared by the generation tests: each leaves the engine idle, and any test that drives its
    executor directly resets the engine's cache afterwards.
    """
    from engine import ExecutorOptions, ModelSource, load_engine

    ckpt, yml, _, _ = llama2_tiny
    engine = load_engine(ModelSource(version=2, config=yml, tokenizer=spm_model, checkpoint=ckpt),
                         ExecutorOptions(backend="mindspore"))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def llama2_cpu_engine(llama2_tiny, spm_model, tmp_path_factory):
    """``llama2_engine``'s model and tokenizer on the default cpu backend (default options), with a context of
    1024 so that a prompt can span two of its 512-token prefill blocks."""
    from engine import ExecutorOptions, ModelSource, load_engine

    ckpt, _, _, spec = llama2_tiny
    yml = mf.write_yaml(spec, tmp_path_factory.mktemp("cpu_engine") / "llama2_tiny_1024.yaml", seq_length=1024)
    engine = load_engine(ModelSource(version=2, config=yml, tokenizer=spm_model, checkpoint=ckpt),
                         ExecutorOptions(backend="cpu"))
    yield engine
    engine.close()


def on_each_backend(request, mindspore_engine):
    """For a module fixture parametrized over ("mindspore", "cpu"): the shared engine of that backend."""
    return mindspore_engine if request.param == "mindspore" else request.getfixturevalue("llama2_cpu_engine")


@pytest.fixture(scope="session")
def cli_compile_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mindspore-compile-cache")


def compile_cache_env(cache: Path, yml) -> dict:
    """Environment sharing MindSpore's graph compile cache between CLI runs of the same yaml.

    A run that loads a model spends ~15 s compiling its graphs; with the cache, later runs of the
    same model take seconds. MindSpore keys the cache by the network's code, not by the constants
    compiled into it (RoPE tables, sizes from the yaml): a cache shared across configs silently
    gives wrong answers, so there is one cache per yaml content. Runs must not pass --max-seq-len.
    """
    key = hashlib.sha256(Path(yml).read_bytes()).hexdigest()[:12]
    return {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(cache / key)}


def run_cli(script: str, *args, home: Path | None = None, env_extra: dict | None = None,
            stdin: str | bytes | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of the root scripts the way a user does, with UTF-8 output.

    ``stdin`` as bytes is sent unchanged (e.g. invalid UTF-8); stdout/stderr are still decoded as UTF-8.
    """
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3")
    if home is not None:
        env["LLAMA_DESK_HOME"] = str(home)
    env.update({k: str(v) for k, v in (env_extra or {}).items()})
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    if isinstance(stdin, bytes):
        done = subprocess.run(command, capture_output=True, input=stdin, env=env, cwd=ROOT, timeout=timeout)
        done.stdout, done.stderr = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
        return done
    return subprocess.run(command, capture_output=True, input=stdin, text=True, encoding="utf-8", env=env,
                          cwd=ROOT, timeout=timeout)


_PROGRESS = re.compile(r"^[\w -]+: *\d+%$")  # "weights:  48%", rewritten in place with \r


def error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a refused command prints (progress lines aside): exit code 2, no traceback; it holds ``needles``."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not _PROGRESS.match(line.strip())]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    """Logits within ``rtol`` of the reference's largest magnitude (float32 sums in another order, fp16 caches)."""
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def greedy_ids(executor, prompt: list[int], n: int) -> list[int]:
    """``n`` tokens by argmax through an executor's own prefill and decode (no sampler, no stop ids)."""
    logits, out = executor.prefill(prompt, 0), []
    for pos in range(len(prompt), len(prompt) + n):
        out.append(int(np.argmax(logits)))
        logits = executor.decode(out[-1], pos)
    return out


class StopAfterChecks(threading.Event):
    """A cancel event that becomes set when checked for the (n+1)-th time: Stop pressed at a known point."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        if self.left == 0:
            self.set()
        self.left -= 1
        return super().is_set()
