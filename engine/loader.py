"""``load_engine``: the one factory. Files are checked, in order, before memory is spent.

Order: config -> checkpoint index -> names/shapes/dtypes against the config ->
tokenizer (and that its vocabulary fits the model) -> only then the weights
are converted and handed to the executor.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import yaml

from .builtin_model import builtin_model_dir
from .chat_engine import ChatEngine, ModelInfo
from .chat_template import template_for
from .config import ModelConfig, load_config
from .errors import CheckpointError, EngineError, TokenizerError
from .memory import available_bytes, estimate_model_bytes, peak_rss_bytes
from .paths import default_model_files
from .weights import open_weights, validate_weights

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def _missing(kind: str, path: Path, version: int) -> str:
    script = default_model_files(version)["download_script"]
    return (f"{kind} not found: {path}. Download the LLaMA{version} files with {script} "
            f"(or pass the path with {'-M' if kind == 'Checkpoint' else '-F'}).")


def _check_vocab_fits(tokenizer, cfg: ModelConfig, tok_path: Path) -> None:
    if tokenizer.vocab_size_with_added > cfg.vocab_size:
        raise TokenizerError(
            f"{tok_path} has {tokenizer.vocab_size_with_added} tokens but the model's vocabulary is "
            f"{cfg.vocab_size}: this tokenizer belongs to another model (LLaMA2 uses 32000, LLaMA3 128256). "
            "Pass the tokenizer.model that came with the checkpoint.")


def _check_memory(cfg: ModelConfig, compute_dtype: str, max_seq_len: int, source) -> None:
    """Refuse, before allocating, a model this PC cannot hold: swapping would take hours."""
    need, free = estimate_model_bytes(cfg, compute_dtype, max_seq_len), available_bytes()
    if free is None or need <= free or os.environ.get("LLAMA_DESK_SKIP_MEMORY_CHECK"):
        return
    source.close()
    gb = 1e9
    raise EngineError(
        f"Running {source.path.name} with MindSpore on the CPU needs about {need / gb:.1f} GB of memory "
        f"(weights in {compute_dtype}: MindSpore's CPU kernels cannot compute in 2-byte types), but only "
        f"{free / gb:.1f} GB is free. Close other programs or lower --max-seq-len; a 7-8B model needs a "
        "PC with 32 GB. Set LLAMA_DESK_SKIP_MEMORY_CHECK=1 to try anyway.")


def _build(cfg, source, executor, max_seq_len, compute_dtype, progress):
    if executor != "mindspore":
        raise CheckpointError(f"Unknown executor {executor!r}; available: mindspore")
    from .mindspore_executor import MindSporeExecutor
    report = (lambda d, t: progress("weights", d, t)) if progress else None
    return MindSporeExecutor(cfg, source, max_seq_len=max_seq_len, compute_dtype=compute_dtype, progress=report)


def load_engine(version: int | None = None, config_path: str | Path | None = None,
                tokenizer_path: str | Path | None = None, checkpoint_path: str | Path | None = None, *,
                fast: bool = False, builtin: bool = False, need_tokenizer: bool = True,
                max_seq_len: int | None = None, compute_dtype: str = "float32",
                executor: str = "mindspore", progress: ProgressFn | None = None) -> ChatEngine:
    """Load LLaMA2 (version=2), LLaMA3 (version=3) or the built-in model (builtin=True)."""
    from .tokenizers import load_tokenizer, load_tokenizer_json

    start = time.perf_counter()
    if builtin:
        folder = builtin_model_dir((lambda d, t: progress("converting built-in model", d, t)) if progress else None)
        doc = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        cfg = load_config(folder / "config.yaml")
        extra = doc.get("llama_desk", {})
        source = open_weights(folder / "model.safetensors")
        validate_weights(source, cfg, str(folder / "config.yaml"))
        tokenizer = load_tokenizer_json(folder / "tokenizer.json")
        _check_vocab_fits(tokenizer, cfg, folder / "tokenizer.json")
        template = template_for(extra.get("chat_template", "chatml"), extra.get("default_system"))
        name, ckpt = extra.get("name", "built-in model"), folder / "model.safetensors"
    else:
        if version not in (2, 3):
            raise CheckpointError(f"Model version must be 2 or 3 (got {version!r}).")
        defaults = default_model_files(version)
        cfg = load_config(config_path or defaults["config"])
        ckpt = Path(checkpoint_path or defaults["checkpoint"])
        if not ckpt.is_file():
            raise CheckpointError(_missing("Checkpoint", ckpt, version))
        source = open_weights(ckpt)
        validate_weights(source, cfg, str(config_path or defaults["config"]))
        tokenizer = None
        if need_tokenizer or tokenizer_path:
            tok_path = Path(tokenizer_path or defaults["tokenizer"])
            if not tok_path.is_file():
                raise TokenizerError(_missing("Tokenizer", tok_path, version))
            tokenizer = load_tokenizer(tok_path, version, fast=fast)
            _check_vocab_fits(tokenizer, cfg, tok_path)
        template = template_for(f"llama{version}")
        name = f"LLaMA{version} ({ckpt.name})"
    weight_bytes = source.total_bytes
    _check_memory(cfg, compute_dtype, min(max_seq_len or cfg.seq_length, cfg.seq_length), source)
    try:
        runner = _build(cfg, source, executor, max_seq_len, compute_dtype, progress)
    finally:
        source.close()
    if progress:
        progress("compiling", 0, 1)
    runner.warmup()
    if progress:
        progress("compiling", 1, 1)
    info = ModelInfo(name=name, version=None if builtin else version, checkpoint=ckpt,
                     tokenizer=getattr(tokenizer, "name", None), template=template.name if tokenizer else None,
                     executor=runner.name, weight_bytes=weight_bytes, load_s=time.perf_counter() - start,
                     peak_rss_after_load=peak_rss_bytes())
    return ChatEngine(runner, tokenizer, template if tokenizer else None, info)
