"""The MindSpore executor: builds the Cells without allocating, fills them from the reader.

The network is created under ``no_init_parameters`` so no weight memory is
allocated up front; each tensor is then converted once (bf16/fp16 -> compute
dtype) straight from the memory-mapped file and handed to its Parameter with
``Tensor.from_numpy``, which shares the numpy buffer. Peak memory is therefore
the weights in the compute dtype plus one tensor in flight.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .config import ModelConfig
from .errors import EngineError
from .executor import Executor
from .tensor_source import TensorSource

PREFILL_CHUNK = 64
# A short chat turn is padded to this instead: prefill is compute-bound, so padding costs time.
SHORT_CHUNK = 16
# Attention windows: a graph per bucket is compiled when a conversation first reaches it.
MIN_WINDOW = 512
ProgressFn = Callable[[int, int], None]


def _import_mindspore():
    try:
        import mindspore as ms
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError(f"MindSpore is not installed or failed to import ({exc}). "
                          "Install it with: pip install mindspore==2.10.0 \"numpy<2\"") from None
    return ms


def _use_device(ms, device: str) -> None:
    """Pick the device once per process; MindSpore refuses a change after the first kernel ran."""
    try:
        ms.set_device(device)
    except RuntimeError:
        current = ms.get_context("device_target")
        if current != device:
            raise EngineError(f"MindSpore is already running on {current} in this process; "
                              f"restart the program to use {device}.") from None


def _explain_failure(exc: BaseException) -> str:
    """MindSpore's errors are pages of C++ context; keep the line a user can act on."""
    text = str(exc)
    if "Memory" in text or isinstance(exc, MemoryError):
        return ("MindSpore ran out of memory while running the model. Close other programs or use a smaller "
                "--max-seq-len.")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("-", "mindspore/"))]
    return "MindSpore failed while running the model: " + (lines[0] if lines else type(exc).__name__)


def _convert(source: TensorSource, name: str, dtype: str) -> np.ndarray:
    array = source.float32(name)
    return array if dtype == "float32" else array.astype(np.float16)


class MindSporeExecutor(Executor):
    """LLaMA on MindSpore (CPU by default) with graph-compiled prefill and decode steps."""

    name = "mindspore"

    def __init__(self, cfg: ModelConfig, source: TensorSource, max_seq_len: int | None = None,
                 compute_dtype: str = "float32", progress: ProgressFn | None = None,
                 device: str = "CPU"):
        ms = _import_mindspore()
        from mindspore import Tensor
        from mindspore.nn.utils import no_init_parameters

        from .ms_llama import LlamaForCausalLM

        _use_device(ms, device)
        if compute_dtype != "float32" and (device == "CPU" or compute_dtype != "float16"):
            # On CPU, MindSpore's float16 MatMul casts the weights to float32 on every call:
            # slower than float32 and out of memory on a 7B model (measured).
            raise EngineError(f"MindSpore cannot compute in {compute_dtype} on {device}; use float32.")
        self.config = cfg
        self.max_seq_len = min(max_seq_len or cfg.seq_length, cfg.seq_length)
        self._ms, self._Tensor = ms, Tensor
        cache_len = self.max_seq_len + PREFILL_CHUNK
        self._cache_len = cache_len
        with no_init_parameters():
            self.net = LlamaForCausalLM(cfg, cache_len, compute_dtype)
        self._load(source, compute_dtype, progress)
        self._step = ms.jit(self.net.construct)

    def _load(self, source: TensorSource, dtype: str, progress: ProgressFn | None) -> None:
        Tensor = self._Tensor
        params = dict(self.net.parameters_and_names())
        total = sum(source.tensors[n].nbytes for n in params if n in source.tensors)
        done = 0
        for name, param in params.items():
            if name.endswith(("k_cache", "v_cache")):
                param.set_data(Tensor.from_numpy(np.zeros(param.shape, np.float32)))
                continue
            is_norm = name.endswith("norm.weight") or name.endswith("norm_out.weight")
            array = source.float32(name) if is_norm else _convert(source, name, dtype)
            param.set_data(Tensor.from_numpy(array))
            done += source.tensors[name].nbytes
            if progress:
                progress(done, total)

    def warmup(self) -> None:
        """Compile the prefill and decode graphs now, so the first answer is not 10 s late.

        This writes junk into cache positions 0..PREFILL_CHUNK; harmless, since
        every later prefill starts by overwriting the positions it uses.
        """
        self._run(np.zeros(PREFILL_CHUNK, np.int32), 0, 0)
        self._run(np.zeros(SHORT_CHUNK, np.int32), 0, 0)
        self._run(np.zeros(1, np.int32), 0, 0)

    def window_for(self, end: int) -> int:
        """Smallest bucket (MIN_WINDOW, doubling, capped at the cache) holding positions < end."""
        window = MIN_WINDOW
        while window < end and window < self._cache_len:
            window *= 2
        return min(window, self._cache_len)

    def _run(self, ids: np.ndarray, start_pos: int, last_row: int) -> np.ndarray:
        Tensor = self._Tensor
        window = self.window_for(start_pos + len(ids))
        try:
            logits = self._step(Tensor(ids.astype(np.int32)), Tensor(np.array([start_pos], np.int32)),
                                Tensor(np.array([last_row], np.int32)), window)
            return logits.asnumpy().reshape(-1)
        except (RuntimeError, MemoryError) as exc:
            raise EngineError(_explain_failure(exc)) from None

    def prefill(self, ids: Sequence[int], start_pos: int) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int32)
        if start_pos + len(ids) > self.max_seq_len:
            raise EngineError(f"{start_pos + len(ids)} tokens do not fit the context of {self.max_seq_len}")
        logits = None
        for begin in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[begin:begin + PREFILL_CHUNK]
            padded = np.zeros(SHORT_CHUNK if len(chunk) <= SHORT_CHUNK else PREFILL_CHUNK, np.int32)
            padded[:len(chunk)] = chunk
            logits = self._run(padded, start_pos + begin, len(chunk) - 1)
        return logits

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos >= self.max_seq_len:
            raise EngineError(f"position {pos} is past the context of {self.max_seq_len}")
        return self._run(np.array([token], np.int32), pos, 0)

    def close(self) -> None:
        self.net = None
        self._step = None

