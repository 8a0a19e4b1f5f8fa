"""``load_engine``: the one factory. Files are checked, in order, before memory is spent.

Two values say what to load: a ``ModelSource`` (which files) and an ``ExecutorOptions`` (how to run
them); every front end builds the same two, and each checks itself when made.

Order: config -> checkpoint index -> names/shapes/dtypes against the config ->
tokenizer (and that its vocabulary fits the model) -> CRC when the file has
one -> backend and its memory estimate against free RAM -> only then the
executor reads the weights. Any refusal closes the checkpoint at once.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import yaml

from .backends.executor import MemoryNeed
from .backends.registry import BackendEntry, ExecutorOptions, resolve
from .builtin_model import builtin_model_dir, find_builtin_gguf
from .config import ModelConfig, load_config
from .errors import Cancelled, CheckpointError, EngineError, TokenizerError
from .generation.chat_engine import ChatEngine, ModelInfo
from .memory import available_bytes, peak_rss_bytes
from .paths import default_model_files
from .generation.prompt_cache import model_facts, state_identity
from .text.chat_template import TEMPLATE_CHOICES, template_for
from .text.model_kind import choose_template
from .weights.integrity import scan_nonfinite, verify_crc_once
from .weights.names import expected_shapes
from .weights.tensor_source import TensorSource
from .weights.validation import open_weights, validate_weights

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def _check_vocab_fits(tokenizer, cfg: ModelConfig, tok_path: Path) -> None:
    if tokenizer.vocab_size_with_added > cfg.vocab_size:
        raise TokenizerError(
            f"{tok_path} has {tokenizer.vocab_size_with_added} tokens but the model's vocabulary is "
            f"{cfg.vocab_size}: this tokenizer belongs to another model (LLaMA2 uses 32000, LLaMA3 128256). "
            "Use the tokenizer.model that came with the checkpoint.", path=tok_path,
            code="tokenizer_vocab_mismatch",
            params={"path": tok_path, "tokens": tokenizer.vocab_size_with_added, "vocab": cfg.vocab_size})


def _check_memory(entry, cfg, source, options: ExecutorOptions) -> MemoryNeed:
    """Refuse, before allocating, a model this PC cannot hold: swapping would take hours."""
    cls = entry.executor_class()
    need = cls.estimate_memory(cfg, source, options)
    free = available_bytes()
    if free is None or need.total <= free or os.environ.get("LLAMA_DESK_SKIP_MEMORY_CHECK"):
        return need
    gb = 1e9
    alternative, suggested = "", None
    smaller = {"stored": ("int8", "int4"), "int8": ("int4",)}.get(options.weight_format, ())
    for fmt, words in ((f, {"int8": "8-bit (int8)", "int4": "4-bit (int4)"}[f]) for f in smaller):
        if entry.name != "cpu":
            break
        small = cls.estimate_memory(cfg, source, replace(options, weight_format=fmt))
        if small.total <= free:
            alternative, suggested = f" With {words} weights it would need {small.total / gb:.1f} GB.", fmt
            break
    raise EngineError(
        f"Running {source.path.name} with the {entry.name} backend needs about {need.summary()}: "
        f"{need.description}. Only {free / gb:.1f} GB is free.{alternative} Close other programs or allow a "
        "shorter context. (Set LLAMA_DESK_SKIP_MEMORY_CHECK=1 to try anyway.)",
        subject="memory", suggested_format=suggested,
        code="not_enough_memory",
        params={"file": source.path.name, "backend": entry.name, "need": need.summary(), "what": need.description,
                "free_gb": free / gb, "alternative": alternative})


@dataclass(frozen=True)
class ModelSource:
    """Which files make the model: LLaMA2 or LLaMA3 files, each one left out looked for where the downloader
    puts it (``engine.paths``), or the built-in model (``builtin=True``)."""

    version: int | None = None                # 2 or 3 (ignored for the built-in model)
    checkpoint: str | Path | None = None      # .ckpt, .safetensors, shards' index or their folder
    tokenizer: str | Path | None = None       # tokenizer.model
    config: str | Path | None = None          # the MindFormers yaml
    builtin: bool = False
    fast_tokenizer: bool = False              # LLaMA2: HF tokenizers' fast one instead of SentencePiece
    need_tokenizer: bool = True               # False: raw token ids only, no tokenizer file needed
    template: str = "auto"                    # chat format: "auto" (the model's own: ``text.model_kind``),
    #                                           "base" (a plain transcript for base models), "llama2", "llama3", "chatml"

    def __post_init__(self):
        if not self.builtin and self.version not in (2, 3):
            raise EngineError(f"The LLaMA version must be 2 or 3 (got {self.version!r}).", subject="version",
                              code="version_invalid", params={"version": self.version})
        if self.template not in TEMPLATE_CHOICES:
            raise EngineError(f"Unknown chat template {self.template!r}. Use one of: {', '.join(TEMPLATE_CHOICES)}.",
                              subject="settings", code="unknown_chat_template",
                              params={"kind": self.template, "choices": ", ".join(TEMPLATE_CHOICES)})


@dataclass
class ModelFiles:
    """A model's files, checked against each other; the weights are indexed, not read."""

    name: str
    cfg: ModelConfig
    checkpoint: Path
    source: TensorSource
    tokenizer: object | None
    template: object
    config_path: Path | None = None
    template_note: str = ""                   # why ``auto`` chose the template, when the user should know

    def summary(self) -> dict:
        stored = sorted({self.source.tensors[n].dtype for n in expected_shapes(self.cfg)})
        return {"name": self.name, "checkpoint": str(self.checkpoint), "format": self.source.format_name,
                "layers": self.cfg.num_layers, "hidden_size": self.cfg.hidden_size,
                "vocab_size": self.cfg.vocab_size, "context_length": self.cfg.seq_length,
                "stored_dtypes": stored, "weight_bytes": self.source.total_bytes,
                "tokenizer": getattr(self.tokenizer, "name", None)}


def _auto_format(weight_format: str, builtin: bool, backend: str) -> str:
    """``auto``: weights as stored, except the built-in model on the cpu backend, which runs from its own
    4-bit blocks (its source file's, taken as they are): the same perplexity as its 8-bit copy, fewer
    bytes per token (README)."""
    if weight_format != "auto":
        return weight_format
    return "int4" if builtin and backend == "cpu" else "stored"


def _builtin_files(progress):
    folder = builtin_model_dir((lambda d, t: progress("converting built-in model", d, t)) if progress else None)
    cfg = load_config(folder / "config.yaml")
    extra = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")).get("llama_desk", {})
    return folder, cfg, extra


def open_model_files(model: ModelSource, progress: ProgressFn | None = None) -> ModelFiles:
    """Config, checkpoint index and tokenizer, each checked against the others (raises EngineError)."""
    from .text.tokenizers import load_tokenizer, load_tokenizer_json

    builtin, version = model.builtin, model.version
    if builtin:
        folder, cfg, extra = _builtin_files(progress)
        ckpt, config_name = folder / "model.safetensors", str(folder / "config.yaml")
        tok_path = folder / "tokenizer.json"
        chosen, note = choose_template(model.template, None, ckpt, tok_path, extra.get("chat_template", "chatml"))
        name = extra.get("name", "built-in model")
    else:
        defaults = default_model_files(version)
        config_name = str(model.config or defaults["config"])
        cfg = load_config(config_name)
        ckpt = Path(model.checkpoint or defaults["checkpoint"])
        if not ckpt.exists():
            raise CheckpointError(f"Checkpoint not found: {ckpt}. The LLaMA{version} files can be downloaded "
                                  "with checkpoint_download.", path=ckpt,
                                  code="checkpoint_not_found", params={"path": ckpt, "version": version})
        wanted = model.need_tokenizer or model.tokenizer
        tok_path = Path(model.tokenizer or defaults["tokenizer"]) if wanted else None
        yaml_doc = yaml.safe_load(Path(config_name).read_text(encoding="utf-8")) or {}
        configured = (yaml_doc.get("llama_desk") or {}).get("chat_template") if isinstance(yaml_doc, dict) else None
        chosen, note = choose_template(model.template, version, ckpt, tok_path, configured)
        name = f"LLaMA{version} ({ckpt.name})"
        extra = {}
    template = template_for(chosen, extra.get("default_system"))
    source = open_weights(ckpt)
    try:
        validate_weights(source, cfg, config_name)
        tokenizer = None
        if tok_path is not None:
            if not tok_path.is_file():
                raise TokenizerError(f"Tokenizer not found: {tok_path}. It comes with the checkpoint "
                                     "(checkpoint_download fetches both).", path=tok_path,
                                     code="tokenizer_not_found", params={"path": tok_path})
            tokenizer = (load_tokenizer_json(tok_path) if builtin
                         else load_tokenizer(tok_path, version, fast=model.fast_tokenizer))
            _check_vocab_fits(tokenizer, cfg, tok_path)
    except BaseException:
        source.close()
        raise
    return ModelFiles(name, cfg, ckpt, source, tokenizer, template, Path(config_name), note)


def check_model_files(model: ModelSource, progress: ProgressFn | None = None) -> dict:
    """Check a model's files against each other without loading weights; a summary dict, or EngineError.

    For the built-in model this converts it first if needed (``progress`` shows that).
    """
    files = open_model_files(model, progress)
    try:
        return files.summary()
    finally:
        files.source.close()


def _resolved(options: ExecutorOptions, files: ModelFiles, builtin: bool) -> tuple[BackendEntry, ExecutorOptions]:
    """The backend to use and the options as its executor takes them (see ``ExecutorOptions``)."""
    entry, ms_device = resolve(options.backend, options.device)
    context = min(options.max_seq_len or files.cfg.seq_length, files.cfg.seq_length)
    # only the cpu backend computes several streams in one step; the others answer one at a time
    parallel = options.parallel if entry.name == "cpu" else 1
    return entry, replace(options, backend=entry.name, device=ms_device, max_seq_len=context, parallel=parallel,
                          weight_format=_auto_format(options.weight_format, builtin, entry.name),
                          config_path=files.config_path, blocks_file=find_builtin_gguf() if builtin else None)


def estimate_memory(model: ModelSource, options: ExecutorOptions = ExecutorOptions()) -> dict:
    """What loading would need in RAM, by part, beside what is free now (nothing is loaded).

    Keys: total, weights, kv_cache, overhead (bytes), description, backend, available (bytes or
    None), fits (bool), and int8_total / int4_total (the same with 8-/4-bit weights, for the cpu backend).
    """
    files = open_model_files(replace(model, need_tokenizer=False, tokenizer=None))
    try:
        entry, options = _resolved(options, files, builtin=False)  # "auto": as stored
        cls = entry.executor_class()
        need = cls.estimate_memory(files.cfg, files.source, options)
        small, smallest = ((cls.estimate_memory(files.cfg, files.source, replace(options, weight_format=f))
                            for f in ("int8", "int4")) if entry.name == "cpu" else (None, None))
    finally:
        files.source.close()
    free = available_bytes()
    return {"total": need.total, "weights": need.weights, "kv_cache": need.kv_cache, "overhead": need.overhead,
            "description": need.description, "backend": entry.name, "available": free,
            "fits": free is None or need.total <= free, "int8_total": small.total if small else None,
            "int4_total": smallest.total if smallest else None}


def verify_checkpoint(checkpoint_path: str | Path, progress: Callable[[int, int], None] | None = None,
                      cancel: threading.Event | None = None) -> list[str]:
    """Read every tensor of a checkpoint: names of those holding NaN/Inf (CRC checked first, if any)."""
    with open_weights(checkpoint_path) as source:
        verify_crc_once(source, progress, cancel)
        return scan_nonfinite(source, progress, cancel)


def load_engine(model: ModelSource, options: ExecutorOptions = ExecutorOptions(), *,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> ChatEngine:
    """Load the model whose files ``model`` names (LLaMA2, LLaMA3 or the built-in one), run as ``options`` say.

    ``progress(stage, done, total)`` reports each stage; ``cancel`` stops loading (raises
    ``Cancelled``) between tensors.
    """
    start = time.perf_counter()
    builtin, version = model.builtin, model.version
    files = open_model_files(model, progress)
    cfg, source, tokenizer, template = files.cfg, files.source, files.tokenizer, files.template
    requested_parallel = options.parallel
    try:
        verify_crc_once(source, (lambda d, t: progress("checking", d, t)) if progress else None, cancel)
        entry, options = _resolved(options, files, builtin)
        reason = entry.executor_class().unavailable_reason(options.device)
        if reason:
            raise EngineError(f"The {entry.name} backend cannot run here: {reason}", subject="settings",
                              code="backend_unavailable", params={"backend": entry.name, "reason": reason})
        need = _check_memory(entry, cfg, source, options)
        if cancel is not None and cancel.is_set():
            raise Cancelled("Loading was cancelled.",
                            code="load_cancelled")
        entry.executor_class().prepare(cfg, source, options, progress, cancel)
    except BaseException:
        source.close()
        raise
    weight_bytes = source.total_bytes
    facts = model_facts(source, cfg, tokenizer)
    report = (lambda d, t: progress("weights", d, t)) if progress else None
    # The executor owns the source from here on, and closes it even if it fails to build.
    runner = entry.executor_class()(cfg, source, options, progress=report, cancel=cancel)
    try:
        runner.warmup(progress)
    except BaseException:
        runner.close()
        raise
    info = ModelInfo(name=files.name, version=None if builtin else version, checkpoint=files.checkpoint,
                     tokenizer=getattr(tokenizer, "name", None), template=template.name if tokenizer else None,
                     executor=runner.name, device=runner.device, weight_format=runner.weight_format,
                     context_length=runner.max_seq_len, weight_bytes=weight_bytes, memory_estimate=need.total,
                     load_s=time.perf_counter() - start, peak_rss_after_load=peak_rss_bytes(),
                     kind=template.kind, state_identity=state_identity(facts, runner))
    if files.template_note and tokenizer:
        info.notes.append(files.template_note)
    if options.parallel < requested_parallel:
        info.notes.append(f"The {runner.name} backend answers one request at a time (--parallel needs the cpu "
                          "backend).")
    if not runner.supports_kv_rows:
        info.notes.append(f"The {runner.name} backend cannot save or move its KV cache: a conversation reopened "
                          "later, or one that outgrew the context, is computed again.")
    return ChatEngine(runner, tokenizer, template if tokenizer else None, info)
