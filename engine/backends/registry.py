"""Which executors exist, what each needs, and how ``auto`` chooses between them.

An executor class is named here by module and class, and imported only when
chosen, so importing ``engine`` never pulls in MindSpore or the JIT compiler.
Each executor class answers two questions before anything is loaded:
``unavailable_reason(device)`` (None when it can run) and
``estimate_memory(cfg, source, options)`` (a ``MemoryNeed``), so a model that
cannot run or does not fit is refused with the reason and the numbers.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError

DEVICES = ("auto", "cpu", "gpu")
RESOLVED_DEVICES = ("CPU", "GPU")    # what executors are given
WEIGHT_FORMATS = ("auto", "stored", "int8", "int4", "float32")
KV_CACHE_TYPES = ("float16", "float32")


@dataclass(frozen=True)
class ExecutorOptions:
    """How to run a model: what a front end passes to ``load_engine`` (the user's choices, ``auto`` where
    they made none), checked when made. The loader resolves it for the model before an executor sees it:
    ``backend`` a registered name, ``device`` "CPU" or "GPU" (MindSpore's spelling), ``weight_format``
    never "auto", ``max_seq_len`` at most the model's, ``config_path`` the yaml the config came from.
    """

    backend: str = "auto"            # "auto" (a usable GPU through MindSpore, else cpu), or a registered name
    device: str = "auto"             # "auto", "cpu", "gpu"
    weight_format: str = "auto"      # "auto" (as stored; the built-in model its own 4-bit blocks on cpu), "stored",
    #                                  "int8", "int4", "float32"
    threads: int | None = None       # None: one per physical core
    max_seq_len: int | None = None   # None: the model's own context length
    kv_cache: str = "float16"        # "float16" or "float32" (executors that have only one ignore it)
    config_path: Path | None = None  # the yaml the model's config came from, for executors that read more of it
    # A GGUF file holding this model's own 4-/8-bit blocks (the built-in model's source): ``int4`` on the cpu
    # backend takes them as they are instead of quantizing the float copy again. Set by the loader.
    blocks_file: Path | None = None
    # Requests computed together, each with its own KV cache (``step_scheduler``): the cpu backend only; the
    # memory estimate counts one cache per stream.
    parallel: int = 1
    # int8/int4 copies kept on disk so that the next load of the same model skips quantizing: at most this many GB
    # (least recently loaded deleted first; 0: none kept). None: ``LLAMA_DESK_WEIGHT_CACHE_GB``, else 16.
    weight_cache_gb: float | None = None

    def __post_init__(self):
        check_choice(self.backend, self.device, self.weight_format, self.kv_cache)
        if self.max_seq_len is not None and (isinstance(self.max_seq_len, bool) or not isinstance(self.max_seq_len, int)
                                             or self.max_seq_len < 2):
            raise EngineError(f"The context length must be a whole number of at least 2 tokens, got "
                              f"{self.max_seq_len!r}.", subject="settings",
                              code="context_length_invalid", params={"value": self.max_seq_len})
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise EngineError(f"threads must be a whole number of at least 1, got {self.threads!r}.",
                              subject="settings", code="threads_invalid", params={"value": self.threads})
        if self.weight_cache_gb is not None and (isinstance(self.weight_cache_gb, bool)
                                                 or not isinstance(self.weight_cache_gb, (int, float))
                                                 or not 0 <= self.weight_cache_gb < float("inf")):
            raise EngineError(f"The size limit of the kept quantized weights must be a number of GB, 0 or more, got "
                              f"{self.weight_cache_gb!r}.", subject="settings", code="weight_cache_invalid",
                              params={"value": self.weight_cache_gb})
        if isinstance(self.parallel, bool) or not isinstance(self.parallel, int) or not 1 <= self.parallel <= 16:
            raise EngineError(f"parallel must be a whole number from 1 to 16, got {self.parallel!r}.",
                              subject="settings", code="parallel_invalid", params={"value": self.parallel})


@dataclass(frozen=True)
class BackendEntry:
    name: str
    summary: str
    target: str                      # "module:Class", imported on first use

    def executor_class(self):
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module, __package__), cls)


_REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    _REGISTRY[entry.name] = entry


register(BackendEntry("cpu", "JIT-compiled CPU kernels over the stored 2-byte weights or 8-bit blocks",
                      ".cpu.cpu_executor:CpuExecutor"))
register(BackendEntry("mindspore", "MindSpore graphs (float32 on the CPU; the GPU when MindSpore can use one)",
                      ".mindspore.mindspore_executor:MindSporeExecutor"))
register(BackendEntry("mindformers", "MindFormers' own LLaMA, float32 on the CPU (optional: python install.py "
                      "--mindformers); a cross-check, slower than the others",
                      ".mindformers.mindformers_executor:MindFormersExecutor"))


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> BackendEntry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise EngineError(f"Unknown backend {name!r}. Available: auto, {', '.join(_REGISTRY)}.",
                          code="unknown_backend", params={"name": name, "choices": ", ".join(_REGISTRY)})
    return entry


def check_choice(backend: str, device: str, weight_format: str, kv_cache: str = "float16") -> None:
    if backend != "auto":
        get_backend(backend)
    if device not in DEVICES + RESOLVED_DEVICES:
        raise EngineError(f"Unknown device {device!r}. Use one of: {', '.join(DEVICES)}.",
                          code="unknown_device", params={"device": device, "choices": ", ".join(DEVICES)})
    if weight_format not in WEIGHT_FORMATS:
        raise EngineError(f"Unknown weight format {weight_format!r}. Use one of: {', '.join(WEIGHT_FORMATS)}.",
                          code="unknown_weight_format",
                          params={"weight_format": weight_format, "choices": ", ".join(WEIGHT_FORMATS)})
    if kv_cache not in KV_CACHE_TYPES:
        raise EngineError(f"Unknown KV cache type {kv_cache!r}. Use one of: {', '.join(KV_CACHE_TYPES)}.",
                          code="unknown_kv_cache", params={"kv_cache": kv_cache, "choices": ", ".join(KV_CACHE_TYPES)})


def resolve(backend: str, device: str) -> tuple[BackendEntry, str]:
    """Pick (backend, MindSpore device name). ``auto``: a usable GPU via MindSpore, else the CPU executor.

    An explicit ``gpu`` that cannot work raises with the reason; ``auto`` falls back quietly
    (the reason is kept in the engine's notes by the caller).
    """
    from .devices import gpu_unavailable_reason

    if device == "gpu":
        if backend not in ("auto", "mindspore"):
            raise EngineError(f"The {backend} backend runs on the CPU only; use --backend mindspore for a GPU.",
                              code="backend_cpu_only", params={"backend": backend})
        reason = gpu_unavailable_reason()
        if reason:
            raise EngineError(f"Cannot use a GPU: {reason}",
                              code="gpu_unavailable", params={"reason": reason})
        return get_backend("mindspore"), "GPU"
    if backend == "auto":
        if device == "auto" and not os.environ.get("LLAMA_DESK_NO_GPU") and gpu_unavailable_reason() is None:
            return get_backend("mindspore"), "GPU"
        return (get_backend("cpu") if _usable("cpu") else get_backend("mindspore")), "CPU"
    entry = get_backend(backend)
    if device == "auto" and backend == "mindspore" and gpu_unavailable_reason() is None:
        return entry, "GPU"
    return entry, "CPU"


def _usable(name: str) -> bool:
    try:
        return get_backend(name).executor_class().unavailable_reason("CPU") is None
    except ImportError:
        return False
