"""Everything MindFormers 2.0.0 needs before its LLaMA runs on a CPU, applied in one place.

MindFormers is built for Ascend: its incremental-inference LLaMA calls fused
kernels that MindSpore has only on Ascend, and its package imports a library
that is not on PyPI. ``import_mindformers()`` is the only way the engine
imports it, and does, in order:

1. refuse any version but 2.0.0 (the release made for MindSpore 2.10; the
   patches below replace named methods of that release's source);
2. point its log folder at our user-data folder (it writes ``./output/log``
   by default, which fails in a read-only working folder), keep its INFO
   lines off the console, where they would interleave with the chat, and
   undo its takeover of ``warnings.showwarning``;
3. stand in for ``hyper_parallel`` (required, not on PyPI): ``models/__init__``
   imports the DeepSeek models, which import names from it and call one at
   import time; the LLaMA we run never uses it, so any attribute is a
   harmless placeholder;
4. replace the two Ascend-only kernels our path reaches with ``mindformers_kernels``;
5. make its copy of SentencePiece's protobuf module the one the ``sentencepiece``
   package ships: both register ``sentencepiece_model.proto``, and once
   MindSpore has switched protobuf to its pure-Python implementation (it does
   on import), the second registration fails with ``KeyError: '_SELFTESTDATA'``
   - so our LLaMA2 tokenizer and MindFormers' fast one could not share a process.

The path we run is MindFormers' own "chunked prefill" mode (its model forward
with ``seq_range``/``block_tables``/``slot_mapping``), so a prompt can be
computed in chunks at any position. It reaches two Ascend-only kernels:
``ApplyRotaryPosEmb`` and the paged-attention pair ``ReshapeAndCache`` /
``PagedAttention``. The other patches known to be needed for MindFormers'
own ``generate()`` on a CPU (its ``mint.argmax`` sampler, its non-numpy logits
processors, ``mint.cumsum`` in dynamic-shape mode) are not applied: we use
our own generation loop and static shapes, so that code never runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import os
import sys
import types
import warnings

from engine.errors import EngineError
from engine.paths import logs_dir

REQUIRED_VERSION = "2.0.0"
INSTALL_HINT = "python install.py --mindformers"
_applied = False


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("mindformers")
    except importlib.metadata.PackageNotFoundError:
        return None


def unavailable_reason() -> str | None:
    """None when MindFormers 2.0.0 is installed; otherwise what to do (nothing is imported)."""
    version = installed_version()
    if version is None:
        return f"MindFormers is not installed: run {INSTALL_HINT}"
    if version != REQUIRED_VERSION:
        return (f"MindFormers {version} is installed, but this backend needs MindFormers {REQUIRED_VERSION} "
                f"(the release for MindSpore 2.10): run {INSTALL_HINT}")
    return None


def import_mindformers():
    """Import MindFormers 2.0.0 ready for CPU inference (idempotent); EngineError if that cannot work."""
    global _applied
    reason = unavailable_reason()
    if reason:
        raise EngineError(reason, subject="settings",
                          code="mindformers_unavailable", params={"reason": reason})
    logs = logs_dir("mindformers")
    os.environ.setdefault("LOCAL_DEFAULT_PATH", str(logs))
    os.environ.setdefault("LOG_MF_PATH", str(logs))
    # MindFormers builds its cells for eager or graph execution from this variable, not from
    # MindSpore's context; we compile its forward with ms.jit, so build them for graphs.
    os.environ["ENFORCE_EAGER"] = "false"
    if importlib.util.find_spec("hyper_parallel") is None:
        sys.meta_path.insert(0, _HyperParallelStandIn())
    _share_sentencepiece_proto()
    showwarning = warnings.showwarning  # MindFormers replaces it, for the whole process, on import
    try:
        import mindformers
        from mindformers.modules import infer_attention, paged_attention_mgr

        from . import mindformers_kernels as kernels
    except Exception as exc:  # noqa: BLE001 - any import failure means the install is broken
        raise EngineError(f"MindFormers failed to import ({type(exc).__name__}: {exc}). Reinstall it: "
                          f"{INSTALL_HINT}", subject="settings",
                          code="mindformers_import_failed",
                          params={"error": f"{type(exc).__name__}: {exc}", "hint": INSTALL_HINT}) from None
    finally:
        warnings.showwarning = showwarning
    _quiet_console()
    if not _applied:
        infer_attention.InferRotaryEmbedding.construct = kernels.rotary_embedding
        manager = paged_attention_mgr.PagedAttentionMgr
        manager.__init__ = kernels.paged_cache_init
        manager.construct = kernels.paged_cache_write
        manager.paged_attn = kernels.paged_attention
        _applied = True
    return mindformers


def _share_sentencepiece_proto() -> None:
    """Serve MindFormers' ``sentencepiece_model_pb2_new`` from the ``sentencepiece`` package (same proto)."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # no sentencepiece (or no protobuf): MindFormers' own copy is the only one
        return
    sys.modules.setdefault("mindformers.models.sentencepiece_model_pb2_new", sentencepiece_model_pb2)


def _quiet_console() -> None:
    """MindFormers logs INFO to stdout; keep it in its log files only."""
    from mindformers.tools.logger import get_logger

    for handler in get_logger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL)


class _Placeholder:
    """Any class, function or object of the missing package: accepts everything, does nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Placeholder()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _HyperParallelStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Supplies ``hyper_parallel`` and any submodule of it as a stand-in module."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "hyper_parallel" or fullname.startswith("hyper_parallel."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass
