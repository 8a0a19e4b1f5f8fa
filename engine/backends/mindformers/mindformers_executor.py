"""The MindFormers executor: MindFormers' own LLaMA (``LlamaForCausalLM``) behind our executor seam.

Useful as a second implementation of the model our users' yaml describes
(MindFormers' own layers, masks, RoPE tables and KV-cache layout; only its two
Ascend-only kernels are replaced, see ``mindformers_patches``), and for users
who want MindFormers' arithmetic. It is slower to start and bigger than the
other backends, so ``auto`` never picks it.

The model is built from the user's yaml (``mindformers_config``) under
``no_init_parameters`` and filled tensor by tensor from our reader, like the
MindSpore executor. Each call runs MindFormers' forward in its chunked-prefill
mode: the tokens' positions (``seq_range``), their cache slots
(``slot_mapping``) and the cache blocks to attend over (``block_tables``) are
explicit, so a prompt is computed in chunks starting at any position, and the
cached prefix of a conversation is reused between turns. Chunks are padded to
a few fixed sizes and the attention window to a few buckets, so MindSpore
compiles a handful of graphs rather than one per prompt length.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np

from engine.backends.executor import Executor, MemoryNeed
from engine.backends.mindspore.graph_shapes import WARMUP_BLOCKS, prefill_in_chunks, window_bucket
from engine.backends.mindspore.mindspore_executor import (explain_failure, fill_parameters, import_mindspore,
                                                          use_device)
from engine.config import ModelConfig
from engine.errors import CheckpointError, EngineError
from engine.weights.names import expected_shapes
from engine.weights.tensor_source import TensorSource

from .mindformers_config import BLOCK_SIZE, cache_capacity, mindformers_settings, yaml_model_config

# MindSpore and MindFormers after import (~0.6 GB), plus three compiled graphs and their work
# buffers (measured: 0.2-0.5 GB each on a LLaMA2-7b-shaped model cut to 4 layers).
RUNTIME_BYTES = 2 << 30
ProgressFn = Callable[[int, int], None]


def _checked(source: TensorSource, name: str, shape: tuple) -> np.ndarray:
    """The tensor MindFormers' network wants under ``name``, if the file has it in that shape (float32)."""
    if name not in source.tensors:
        raise CheckpointError(f"MindFormers' LLaMA built from this config has a tensor {name} that "
                              f"{source.path.name} does not have; the config does not fit the checkpoint.",
                              path=source.path,
                              code="config_tensor_not_in_checkpoint", params={"tensor": name, "file": source.path.name})
    array = source.float32(name)
    if array.shape != shape:
        raise CheckpointError(f"MindFormers reads the config as {name} of shape {shape}, but "
                              f"{source.path.name} has {array.shape}; the config does not fit the checkpoint.",
                              path=source.path, code="config_tensor_shape_mismatch",
                              params={"tensor": name, "expected": shape, "file": source.path.name,
                                      "found": array.shape})
    return array


class MindFormersExecutor(Executor):
    """MindFormers 2.0.0's LlamaForCausalLM on the CPU, float32, with its paged KV cache."""

    name = "mindformers"
    weight_format = "float32"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        from .mindformers_patches import unavailable_reason

        if device != "CPU":
            return "the mindformers backend runs on the CPU only (MindFormers' GPU path is Ascend's)."
        return unavailable_reason()

    @classmethod
    def estimate_memory(cls, cfg: ModelConfig, source, options) -> MemoryNeed:
        params = sum(int(np.prod(shape)) for shape in expected_shapes(cfg).values())
        capacity = cache_capacity(min(options.max_seq_len, cfg.seq_length))
        kv_cache = cfg.num_layers * 2 * cfg.kv_heads * cfg.head_dim * (capacity + BLOCK_SIZE) * 4
        mask = capacity * capacity * 4  # MindFormers keeps a [context, context] causal mask
        return MemoryNeed(params * 4, kv_cache, RUNTIME_BYTES + mask,
                          "weights in float32 (MindSpore's CPU kernels compute only in float32), float32 KV cache")

    def __init__(self, cfg: ModelConfig, source: TensorSource, options, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None):
        try:
            if options.weight_format == "int8":
                raise EngineError("The mindformers backend has no 8-bit weights; use the cpu backend for int8.",
                                  subject="settings",
                                  code="backend_no_int8", params={"backend": "mindformers"})
            self._build(cfg, source, options, progress, cancel)
        finally:
            source.close()  # every weight now lives in MindSpore's memory

    def _build(self, cfg, source, options, progress, cancel) -> None:
        ms = import_mindspore()
        from .mindformers_patches import import_mindformers

        import_mindformers()
        from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
        from mindspore import Tensor
        from mindspore.nn.utils import no_init_parameters

        use_device(ms, "CPU")
        self.config = cfg
        self.max_seq_len = min(options.max_seq_len, cfg.seq_length)
        self._capacity = cache_capacity(self.max_seq_len)
        self._Tensor = Tensor
        settings = mindformers_settings(cfg, yaml_model_config(options.config_path), self._capacity, LlamaConfig)
        try:
            with no_init_parameters():
                self.net = LlamaForCausalLM(LlamaConfig(**settings))
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"MindFormers refused the model's config: {exc}", subject="config",
                              code="mindformers_config_refused", params={"reason": str(exc)}) from None
        self.net.set_train(False)
        fill_parameters(self.net, source, ("key_cache", "value_cache"),
                        lambda name, shape: _checked(source, name, shape), progress, cancel)
        self._step = ms.jit(self._forward)

    def _forward(self, ids, valid_length, tables, slots, positions, last):
        """One MindFormers forward in chunked-prefill mode -> logits [1, vocab] of token ``last`` - 1."""
        out = self.net(ids, batch_valid_length=valid_length, block_tables=tables, slot_mapping=slots,
                       seq_range=positions, gather_index=last)
        return out[0]

    def warmup(self, progress=None) -> None:
        """Compile the chunk graphs now (MindFormers' graphs take seconds each); writes junk at 0..63."""
        blocks = WARMUP_BLOCKS
        for n, size in enumerate(blocks):
            if progress:
                progress("compiling MindFormers graphs", n, len(blocks))
            self._run(np.zeros(size, np.int32), 0, size)
        if progress:
            progress("compiling MindFormers graphs", len(blocks), len(blocks))

    def _run(self, padded: np.ndarray, start_pos: int, count: int) -> np.ndarray:
        """Run ``padded`` (the first ``count`` ids real) at positions start_pos.."""
        Tensor = self._Tensor
        positions = start_pos + np.arange(len(padded), dtype=np.int32)
        slots = np.where(np.arange(len(padded)) < count, positions, -1).astype(np.int32)
        window = window_bucket(start_pos + count, self._capacity)
        tables = np.arange(window // BLOCK_SIZE, dtype=np.int32).reshape(1, -1)
        try:
            logits = self._step(Tensor(padded.reshape(1, -1).astype(np.int32)),
                                Tensor(np.array([start_pos + count], np.int32)), Tensor(tables), Tensor(slots),
                                Tensor(np.minimum(positions, self._capacity - 1)), Tensor(np.array([count], np.int32)))
            return logits.asnumpy().reshape(-1)
        except (RuntimeError, MemoryError) as exc:
            message = explain_failure(exc).replace("MindSpore failed", "MindFormers failed")
            raise EngineError(message, code="backend_failed", params={"detail": message}) from None

    def prefill(self, ids: Sequence[int], start_pos: int, cancel: threading.Event | None = None,
                progress=None) -> np.ndarray:
        return prefill_in_chunks(ids, start_pos, self.max_seq_len, cancel, self._run, progress)

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos >= self.max_seq_len:
            raise EngineError(f"position {pos} is past the context of {self.max_seq_len}",
                              code="position_past_context", params={"position": pos, "context": self.max_seq_len})
        return self._run(np.array([token], np.int32), pos, 1)

    def close(self) -> None:
        self.net = None
        self._step = None
