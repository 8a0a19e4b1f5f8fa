"""The MindSpore executor: builds the Cells without allocating, fills them from the reader.

The network is created under ``no_init_parameters`` so no weight memory is
allocated up front; each tensor is then converted once (bf16/fp16 -> compute
dtype) straight from the memory-mapped file and handed to its Parameter with
``Tensor.from_numpy``, which shares the numpy buffer. Peak memory is therefore
the weights in the compute dtype plus one tensor in flight. MindSpore's CPU
kernels compute in float32 only (bf16 is refused; fp16 MatMul casts the
weights on every call), so on the CPU this executor is the exact float32
reference; on a GPU it computes in float16.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.backends.executor import Executor, MemoryNeed
from engine.backends.kv_rows import shift_rows, write_rows
from engine.config import ModelConfig, rope_inv_frequencies
from engine.errors import Cancelled, EngineError
from engine.paths import logs_dir
from engine.weights.names import expected_shapes
from engine.weights.tensor_source import TensorSource

from .graph_shapes import PREFILL_CHUNK, WARMUP_BLOCKS, prefill_in_chunks, window_bucket

# MindSpore itself (~0.5 GB after import) plus compiled graphs and their work buffers.
RUNTIME_BYTES = 1 << 30
ProgressFn = Callable[[int, int], None]


def import_mindspore():
    """Import MindSpore with its logs and compile-failure dumps kept out of the user's working folder."""
    logs = logs_dir("mindspore")
    os.environ.setdefault("MS_DEV_SAVE_GRAPHS_PATH", str(logs))
    # A graph that fails to compile is dumped to $MS_OM_PATH/rank_0/om/analyze_fail.ir (the working folder
    # when unset); MS_DEV_SAVE_GRAPHS_PATH does not move that dump.
    os.environ.setdefault("MS_OM_PATH", str(logs))
    os.environ.setdefault("GLOG_log_dir", str(logs))
    os.environ.setdefault("GLOG_v", "3")
    if not os.path.isfile(os.__file__):
        # Python's embeddable runtime (the Windows installer's) keeps the standard library in a zip, where
        # MindSpore's test for "standard library: run it as plain Python" (a file under os.py's folder) fails:
        # it would compile collections.abc (which tensor slicing reaches) from a source that is not there.
        # MS_JIT_IGNORE_MODULES is its own way to name them.
        named = os.environ.get("MS_JIT_IGNORE_MODULES")
        os.environ["MS_JIT_IGNORE_MODULES"] = ",".join(filter(None, [named, *sorted(sys.stdlib_module_names)]))
    try:
        import mindspore as ms
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError(f"MindSpore is not installed or failed to import ({exc}). "
                          "Install it with: pip install mindspore==2.10.0 \"numpy<2\"",
                          code="mindspore_import_failed", params={"error": str(exc)}) from None
    return ms


def _outside_windows_code_page(*folders: Path) -> str | None:
    """Why MindSpore cannot compile here, if a folder its graphs come from has a name Windows' ANSI code page
    cannot hold (C:\\Users\\张三 on an English Windows, cp1252): its graph compiler handles source paths in that
    code page, and such a graph silently computes nothing (measured under Wine; cp936 holds 张三 and works)."""
    if sys.platform != "win32":
        return None
    import locale
    code_page = locale.getencoding() if hasattr(locale, "getencoding") else locale.getpreferredencoding(False)
    for folder in folders:
        try:
            str(folder).encode(code_page)
        except UnicodeEncodeError:
            return (f"MindSpore cannot compile its graphs from {folder}: the path has characters this Windows' "
                    f"code page ({code_page}) cannot hold. Use the cpu backend, or install llama-desk in a folder "
                    "such as C:\\llama-desk.")
    return None


def keep_ctrl_c() -> None:
    """MindSpore replaces Python's Ctrl-C handler (its handler ends the process) when it starts and when
    it compiles; put Python's back, so Ctrl-C stops an answer instead of the program."""
    import signal
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def use_device(ms, device: str) -> None:
    """Pick the device once per process; MindSpore refuses a change after the first kernel ran."""
    try:
        ms.set_device(device)
    except RuntimeError:
        current = ms.get_context("device_target")
        if current != device:
            raise EngineError(f"MindSpore is already running on {current} in this process; "
                              f"restart the program to use {device}.",
                              code="mindspore_device_taken", params={"current": current, "device": device}) from None


def explain_failure(exc: BaseException) -> str:
    """MindSpore's errors are pages of C++ context; keep the line a user can act on."""
    text = str(exc)
    if "Memory" in text or isinstance(exc, MemoryError):
        return ("MindSpore ran out of memory while running the model. Close other programs or allow a shorter "
                "context.")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("-", "mindspore/"))]
    return "MindSpore failed while running the model: " + (lines[0][:300] if lines else type(exc).__name__)


def fill_parameters(net, source: TensorSource, cache_suffixes: tuple[str, ...],
                    array_for: Callable[[str, tuple], np.ndarray], progress: ProgressFn | None,
                    cancel: threading.Event | None) -> None:
    """Give each Parameter of ``net`` (built under ``no_init_parameters``) its tensor, read once from ``source``.

    ``array_for(name, shape)`` reads and converts one tensor; ``Tensor.from_numpy`` then shares its buffer,
    so memory holds the converted weights plus one tensor in flight. The KV caches (names ending in
    ``cache_suffixes``) start as zeros. A set ``cancel`` stops between tensors.
    """
    from mindspore import Tensor

    params = dict(net.parameters_and_names())
    total = sum(source.tensors[n].nbytes for n in params if n in source.tensors)
    done = 0
    for name, param in params.items():
        if cancel is not None and cancel.is_set():
            raise Cancelled("Loading was cancelled.", code="load_cancelled")
        if name.endswith(cache_suffixes):
            param.set_data(Tensor.from_numpy(np.zeros(param.shape, np.float32)))
            continue
        param.set_data(Tensor.from_numpy(array_for(name, tuple(param.shape))))
        done += source.tensors[name].nbytes
        if progress:
            progress(done, total)


def _compute_dtype(device: str, weight_format: str) -> str:
    if weight_format == "int8":
        raise EngineError("The mindspore backend has no 8-bit weights; use the cpu backend for int8.",
                          subject="settings",
                          code="backend_no_int8", params={"backend": "mindspore"})
    return "float16" if device == "GPU" and weight_format == "stored" else "float32"


class MindSporeExecutor(Executor):
    """LLaMA on MindSpore (CPU, or GPU when usable) with graph-compiled prefill and decode steps."""

    name = "mindspore"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        import importlib.util

        spec = importlib.util.find_spec("mindspore")
        if spec is None:
            return "MindSpore is not installed (pip install mindspore==2.10.0)."
        outside = _outside_windows_code_page(Path(__file__).parent, Path(spec.origin).parent)
        if outside:
            return outside
        if device == "GPU":
            from engine.backends.devices import gpu_unavailable_reason
            return gpu_unavailable_reason()
        return None

    @classmethod
    def estimate_memory(cls, cfg: ModelConfig, source, options) -> MemoryNeed:
        dtype = _compute_dtype(options.device, options.weight_format)
        params = sum(int(np.prod(shape)) for shape in expected_shapes(cfg).values())
        seq = min(options.max_seq_len, cfg.seq_length) + PREFILL_CHUNK
        kv_cache = cfg.num_layers * 2 * cfg.kv_heads * cfg.head_dim * seq * 4
        why = "MindSpore's CPU kernels compute only in float32" if dtype == "float32" else "float16 on the GPU"
        return MemoryNeed(params * (4 if dtype == "float32" else 2), kv_cache, RUNTIME_BYTES,
                          f"weights in {dtype} ({why}), float32 KV cache")

    def __init__(self, cfg: ModelConfig, source: TensorSource, options, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None):
        try:
            self._build(cfg, source, options, progress, cancel)
        finally:
            source.close()  # every weight is converted into MindSpore's own memory: the file is not needed

    def _build(self, cfg, source, options, progress, cancel) -> None:
        ms = import_mindspore()
        from mindspore import Tensor
        from mindspore.nn.utils import no_init_parameters

        from .llama_model import LlamaForCausalLM

        self.device = options.device
        use_device(ms, self.device)
        compute_dtype = _compute_dtype(self.device, options.weight_format)
        self.weight_format = compute_dtype
        self.config = cfg
        self.max_seq_len = min(options.max_seq_len, cfg.seq_length)
        self._ms, self._Tensor = ms, Tensor
        cache_len = self.max_seq_len + PREFILL_CHUNK
        self._cache_len = cache_len
        with no_init_parameters():
            self.net = LlamaForCausalLM(cfg, cache_len, compute_dtype)

        def array_for(name: str, _shape) -> np.ndarray:
            array = source.float32(name)
            is_norm = name.endswith("norm.weight") or name.endswith("norm_out.weight")  # norms stay float32
            return array.astype(np.float16) if compute_dtype == "float16" and not is_norm else array
        fill_parameters(self.net, source, ("k_cache", "v_cache"), array_for, progress, cancel)
        self._step = ms.jit(self.net.construct)

    def warmup(self, progress=None) -> None:
        """Compile the prefill and decode graphs now, so the first answer is not 10 s late.

        This writes junk into cache position 0 (and the spare positions past the
        context); harmless, since every later prefill overwrites the positions it uses.
        """
        blocks = WARMUP_BLOCKS
        for n, size in enumerate(blocks):
            if progress:
                progress("compiling MindSpore graphs", n, len(blocks))
            self._run(np.zeros(size, np.int32), 0, 0)
        if progress:
            progress("compiling MindSpore graphs", len(blocks), len(blocks))

    def window_for(self, end: int) -> int:
        return window_bucket(end, self._cache_len)

    def _run(self, ids: np.ndarray, start_pos: int, last_row: int) -> np.ndarray:
        Tensor = self._Tensor
        window = self.window_for(start_pos + len(ids))
        try:
            logits = self._step(Tensor(ids.astype(np.int32)), Tensor(np.array([start_pos], np.int32)),
                                Tensor(np.array([last_row], np.int32)), window)
            keep_ctrl_c()
            return logits.asnumpy().reshape(-1)
        except (RuntimeError, MemoryError) as exc:
            message = explain_failure(exc)
            raise EngineError(message, code="backend_failed", params={"detail": message}) from None

    def prefill(self, ids: Sequence[int], start_pos: int, cancel: threading.Event | None = None,
                progress=None) -> np.ndarray:
        return prefill_in_chunks(ids, start_pos, self.max_seq_len, cancel,
                                 lambda padded, start, count: self._run(padded, start, count - 1), progress)

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos >= self.max_seq_len:
            raise EngineError(f"position {pos} is past the context of {self.max_seq_len}",
                              code="position_past_context", params={"position": pos, "context": self.max_seq_len})
        return self._run(np.array([token], np.int32), pos, 0)

    # -- the cache's rows: each layer's cache is a float32 Parameter [kv_head, position, head_dim] ----
    # Reading one is a host copy; writing is an Assign kernel of the whole layer's cache (fine for the
    # reference and GPU path). set_data and assign_value are not for this: the compiled graph then
    # reads or writes another buffer than the one assigned.
    supports_kv_rows = True
    kv_element_type = "float32"

    def _cache_parameters(self):
        return [(layer.attention.k_cache, layer.attention.v_cache) for layer in self.net.model.layers]

    def export_kv(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = self._cache_parameters()
        return (np.stack([k.asnumpy()[:, start:stop] for k, _ in pairs]),
                np.stack([v.asnumpy()[:, start:stop] for _, v in pairs]))

    def _rewrite_caches(self, change) -> None:
        """Apply ``change(keys, values)`` (numpy, in place) to every layer's cache and hand it back."""
        for k, v in self._cache_parameters():
            keys, values = k.asnumpy().copy(), v.asnumpy().copy()
            change(keys, values)
            self._ms.ops.assign(k, self._Tensor(keys))
            self._ms.ops.assign(v, self._Tensor(values))

    def import_kv(self, start: int, keys: np.ndarray, values: np.ndarray) -> None:
        layers = iter(zip(keys, values))

        def write(k_cache, v_cache):
            k_rows, v_rows = next(layers)
            write_rows(k_cache, start, k_rows)
            write_rows(v_cache, start, v_rows)
        self._rewrite_caches(write)

    def shift_kv(self, src: int, dst: int, count: int) -> None:
        inv_freq = rope_inv_frequencies(self.config)
        self._rewrite_caches(lambda k_cache, v_cache: shift_rows(k_cache, v_cache, src, dst, count, inv_freq))

    def close(self) -> None:
        self.net = None
        self._step = None

