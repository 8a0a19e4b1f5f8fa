"""Session fixtures for model tests: real MindSpore checkpoints and loaded executors.

Checkpoints are written once per machine into the test cache (model_factory);
executors are built once per session, because graph compilation takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import model_factory as mf

ROOT = Path(__file__).resolve().parent.parent
# Converted built-in models and settings go to the test cache, never the user's real folder.
os.environ.setdefault("LLAMA_DESK_HOME", str(mf.CACHE / "home"))


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
                  kv_cache="float16"):
    """An executor from the registry, built the way load_engine builds it (it owns the source)."""
    from engine.backends import ExecutorOptions, get_backend
    from engine.config import load_config
    from engine.weights import open_weights, validate_weights

    cfg = load_config(yml)
    source = open_weights(ckpt)
    validate_weights(source, cfg)
    options = ExecutorOptions(max_seq_len=max_seq_len or cfg.seq_length, device="CPU",
                              weight_format=weight_format, threads=threads, kv_cache=kv_cache,
                              config_path=Path(yml))
    return get_backend(backend).executor_class()(cfg, source, options)


@pytest.fixture(scope="session")
def llama2_executor(llama2_tiny):
    return make_executor("mindspore", llama2_tiny[0], llama2_tiny[1])


@pytest.fixture(scope="session")
def llama3_executor(llama3_chunked):
    return make_executor("mindspore", llama3_chunked[0], llama3_chunked[1])


def run_cli(script: str, *args, home: Path | None = None, env_extra: dict | None = None,
            stdin: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of the root scripts the way a user does, with UTF-8 output."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3")
    if home is not None:
        env["LLAMA_DESK_HOME"] = str(home)
    env.update({k: str(v) for k, v in (env_extra or {}).items()})
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True,
                          input=stdin, text=True, encoding="utf-8", env=env, cwd=ROOT, timeout=timeout)
