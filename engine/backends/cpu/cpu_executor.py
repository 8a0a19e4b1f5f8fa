"""The ``cpu`` executor: LLaMA computed from the checkpoint's own 2-byte weights, or 8-/4-bit blocks.

MindSpore's CPU kernels compute only in float32, which doubles a 2-byte
model's memory and the bytes each token must read. Here the weights stay as
stored (fp16/bf16 views into the memory-mapped file: no copy, no conversion)
or are quantized at load to 8-bit or 4-bit blocks (``weight_format="int8"``/``"int4"``), and
JIT-compiled kernels (numba) compute with them directly: decode is one fused,
multi-threaded call per token; prefill runs the same tile kernels over blocks
of prompt tokens (several tokens per weight load). The KV cache holds fp16 by default (float32 on request:
exact to float32 rounding, twice the memory). MindSpore is never imported.

With ``parallel`` N the cache has N slots, one per stream (``step_scheduler``):
``decode_rows`` computes tokens of several slots in one pass over the weights,
and prefill and the cache's rows take the slot they work on (slot 0 is the one
a single stream uses). Memory of a slot never used is never touched.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np

from engine.backends.executor import Executor, MemoryNeed, PrefillCancelled
from engine.backends.kv_rows import copy_rows, element_type, shift_rows, write_rows
from engine.config import ModelConfig, rope_inv_frequencies
from engine.errors import Cancelled, EngineError
from engine.weights.names import EMBEDDING, LM_HEAD, NORM_OUT, layer_name
from engine.weights.tensor_source import TensorSource

# Prompt tokens per block: each weight matrix streams from memory a few times per block (``matmul``),
# so taller blocks read less per token. Stop is checked between layers.
PREFILL_BLOCK = 512
# Shorter prompts (a chat turn's few new tokens) go through the decode path token by token.
DECODE_PATH_MAX = 3
_LINEAR = ("wq", "wk", "wv", "wo", "w1", "w3", "w2")
# numba/llvmlite once loaded, plus scratch buffers of a prefill block.
_RUNTIME_BYTES = 350 << 20
ProgressFn = Callable[[int, int], None]


def _prefill_scratch_bytes(cfg: ModelConfig, max_seq_len: int) -> int:
    block = min(PREFILL_BLOCK, max_seq_len)
    activations = block * (4 * cfg.hidden_size + 3 * cfg.ffn_size) * 4
    # its output; two threads' scores, query and output rows for a tile of 16 (prefill.TILE_ROWS) query rows
    attention = block * cfg.num_heads * cfg.head_dim * 4 + 2 * 16 * (max_seq_len + 2 * cfg.head_dim) * 4
    eight_bit = block * max(cfg.ffn_size, cfg.hidden_size) * 3 // 2   # a block's activations in 8-bit blocks
    return activations + attention + eight_bit + cfg.num_heads * max_seq_len * 4


def _one_block(weight):
    """A layer matrix as one array: the fused decode step reads each matrix as a single block, so a matrix
    MindSpore split into several records (over 512 MiB) is joined here (a copy) rather than half-read."""
    if len(weight.parts) == 1:
        return weight
    joined = np.concatenate([data for _, data, _ in weight.parts])
    return type(weight)(weight.shape, weight.format, [(0, joined, weight.parts[0][2])])


class PromptPiece(NamedTuple):
    """A block of one slot's prompt for ``prefill_pieces``: ``done`` prompt tokens before it, for ``progress``."""

    ids: np.ndarray
    start: int
    slot: int = 0
    done: int = 0
    progress: Callable[[int], None] | None = None


class _Layer:
    __slots__ = ("attn_norm", "ffn_norm", "wq", "wk", "wv", "wo", "w1", "w3", "w2")


class CpuExecutor(Executor):
    name = "cpu"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        if device != "CPU":
            return "the cpu backend runs on the CPU only."
        import importlib.util
        if importlib.util.find_spec("numba") is None:
            return "numba is not installed (pip install numba)."
        from engine.cpu_info import cpu_features
        if not cpu_features()["f16c"]:  # LLVM then calls __extendhfsf2, which numba lacks: the process aborts
            return "this CPU lacks F16C (half-precision conversion), which the cpu backend's kernels need."
        return None

    @classmethod
    def prepare(cls, cfg: ModelConfig, source, options, progress=None, cancel=None) -> None:
        """On the first start, compile the kernels in a child process (``precompile``: the compiler's memory
        leaves with it); if that fails, ``warmup`` compiles them here as it always could."""
        from .precompile import compile_in_child
        from .quantize import QUANTIZED

        if options.weight_format not in ("stored",) + QUANTIZED:
            return  # refused when built, with the reason
        failed = compile_in_child(cfg, source, options, progress, cancel)
        if failed:  # a log line (the app's log file), not a message: the load goes on, at most ~0.2 GB fuller
            import logging
            logging.getLogger(__name__).info("CPU kernels are compiled in this process instead: %s", failed)

    @classmethod
    def estimate_memory(cls, cfg: ModelConfig, source, options) -> MemoryNeed:
        from .quantize import QUANTIZED, can_quantize, head_format, quantized_bytes

        seq = min(options.max_seq_len, cfg.seq_length)
        per_stream = cfg.num_layers * 2 * cfg.kv_heads * seq * cfg.head_dim * (4 if options.kv_cache == "float32" else 2)
        kv_cache = per_stream * options.parallel
        weights = 0
        for name, info in source.tensors.items():
            if not name.startswith(("model.", "lm_head.")):
                continue
            if name == EMBEDDING and not cfg.tie_word_embeddings:
                weights += info.shape[1] * 2 * 64  # only the rows of tokens seen are ever read
            elif options.weight_format in QUANTIZED and can_quantize(info.shape):
                weights += quantized_bytes(info.shape, head_format(name, cfg, options.weight_format))
            else:
                weights += info.nbytes
        kind = {"int8": "8-bit weights (blocks of 32)", "int4": "4-bit weights (blocks of 32)"}.get(
            options.weight_format, "weights as stored")
        streams = f" x {options.parallel} parallel streams" if options.parallel > 1 else ""
        return MemoryNeed(weights, kv_cache, _RUNTIME_BYTES + _prefill_scratch_bytes(cfg, seq),
                          f"{kind}, {options.kv_cache} KV cache for {seq} tokens{streams}")

    def __init__(self, cfg: ModelConfig, source: TensorSource, options, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None):
        self.config = cfg
        self.source = source
        self.max_seq_len = min(options.max_seq_len, cfg.seq_length)
        self.threads = options.threads
        self.kv_cache = options.kv_cache
        self.slots = options.parallel
        # Inputs of packed-weight products: 8-bit blocks (llama.cpp's scheme; on the built-in model's
        # perplexity no worse than llama.cpp Q8_0's). The built-in 135M model gets 16-bit ones: 8-bit
        # rounding changed its greedy answers (to "What is the capital of France?", as llama.cpp's from
        # the same file), and at its size the extra integer work costs little.
        self.activation_type = np.int16 if options.blocks_file is not None else np.int8
        self.weights_from_cache = False   # the quantized weights were read back from an earlier load's file
        try:
            self._build(options, progress, cancel)
        except BaseException:
            self.close()
            raise

    # -- loading ------------------------------------------------------------
    def _build(self, options, progress, cancel) -> None:
        from . import jit
        from .precompile import kernel_variant
        from .quantize import QUANTIZED, can_quantize, format_code, head_format
        from engine.paths import quantized_weights_dir

        from .weight_cache import WeightCache
        from .weights import packs_layers, quantized_weight, stored_layout, stored_weight, vector

        from .thread_tuner import ThreadTuner
        self.tuner = ThreadTuner(jit.use_threads(self.threads), fixed=self.threads is not None)
        cfg, source = self.config, self.source
        self.kernel_variant = kernel_variant(cfg, source, options)
        quantize = options.weight_format in QUANTIZED
        if options.weight_format not in ("stored",) + QUANTIZED:
            raise EngineError(f"The cpu backend computes from weights as stored, int8 or int4, not "
                              f"{options.weight_format}.", subject="settings",
                              code="backend_weight_format",
                              params={"backend": "cpu", "weight_format": options.weight_format})
        blocks = {}
        if options.weight_format == "int4" and options.blocks_file is not None:
            from .gguf_blocks import gguf_block_weights
            blocks = gguf_block_weights(options.blocks_file, cfg.num_heads, cfg.kv_heads)
        matrices = [layer_name(i, s) for i in range(cfg.num_layers) for s in _LINEAR]
        head = EMBEDDING if cfg.tie_word_embeddings else LM_HEAD
        total = sum(source.tensors[n].nbytes for n in matrices + [head])
        done, copy = 0, stored_layout() != "map"
        packed = {n: (format_code(head_format(n, cfg, options.weight_format)), source.tensors[n].shape[0],
                      int(np.prod(source.tensors[n].shape[1:])))
                  for n in matrices + [head] if quantize and n not in blocks and can_quantize(source.tensors[n].shape)}
        # stored layer matrices side by side in 4-row groups (the vocabulary matrix stays in rows: its rows are
        # also the tied embedding's)
        pack_layers = packs_layers(source, [n for n in matrices if n not in packed and n not in blocks])
        kept = WeightCache.open(quantized_weights_dir(), source, options.weight_format, packed, options.weight_cache_gb)

        def load(name: str):
            nonlocal done
            if cancel is not None and cancel.is_set():
                raise Cancelled("Loading was cancelled.",
                                code="load_cancelled")
            info = source.tensors[name]
            if name in blocks:
                weight = blocks.pop(name)
            elif name in packed:
                weight = kept.read(name) if kept is not None else None
                if weight is None:
                    weight = quantized_weight(source, name, packed[name][0])
                    if kept is not None:
                        kept.add(name, weight)
            else:
                weight = stored_weight(source, name, copy, pack=pack_layers and name != head)
            if name != head:
                weight = _one_block(weight)
            done += info.nbytes
            if progress:
                progress(done, total)
            return weight

        self.layers = []
        try:
            for i in range(cfg.num_layers):
                layer = _Layer()
                layer.attn_norm = vector(source, layer_name(i, "attention_norm"))
                layer.ffn_norm = vector(source, layer_name(i, "ffn_norm"))
                for short in _LINEAR:
                    setattr(layer, short, load(layer_name(i, short)))
                self.layers.append(layer)
            self.norm_out = vector(source, NORM_OUT)
            self.lm_head = load(head)
        except BaseException:
            if kept is not None:
                kept.abandon()
            raise
        if kept is not None:
            self.weights_from_cache = kept.hit
            kept.finish()
        self.embedding = self.lm_head if cfg.tie_word_embeddings else stored_weight(source, EMBEDDING)
        formats = {getattr(layer, s).format for layer in self.layers for s in _LINEAR}
        self.weight_format = "/".join(sorted(formats))
        self._allocate()

    def _allocate(self) -> None:
        from .prefill import Activations

        cfg, seq = self.config, self.max_seq_len
        hd = cfg.head_dim
        kv_type = np.float32 if self.kv_cache == "float32" else np.uint16  # uint16 holds fp16 bits
        # [slot, layer, kv_head, position, head_dim]; np.zeros: a slot's pages are touched only when used
        self.slot_k = np.zeros((self.slots, cfg.num_layers, cfg.kv_heads, seq, hd), kv_type)
        self.slot_v = np.zeros((self.slots, cfg.num_layers, cfg.kv_heads, seq, hd), kv_type)
        self.k_cache, self.v_cache = self.slot_k[0], self.slot_v[0]
        angles = np.outer(np.arange(seq, dtype=np.float64), rope_inv_frequencies(cfg))
        self.cos, self.sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
        from .model_step import MAX_TOKENS

        h, q_dim, kv_dim, f, n = cfg.hidden_size, cfg.num_heads * hd, cfg.kv_heads * hd, cfg.ffn_size, MAX_TOKENS
        self._x = np.zeros((n, h), np.float32)
        self._buffers = (np.zeros((n, h), np.float32), np.zeros((n, q_dim), np.float32),
                         np.zeros((n, 2, kv_dim), np.float32), np.zeros((n, q_dim), np.float32),
                         np.zeros((n, f), np.float32), np.zeros((n, f), np.float32), np.zeros((n, h), np.float32),
                         np.zeros((n * cfg.num_heads, seq), np.float32))
        self._logits = np.zeros((n, cfg.vocab_size), np.float32)
        widest = max(h, q_dim, f)
        # the tokens' inputs in 8-bit blocks (values, scales, block sums), for packed weights
        self._act = (np.zeros((n, widest), self.activation_type), np.zeros((n, widest // 32 + 1), np.float32),
                     np.zeros((n, widest // 32 + 1), np.int32))
        self._block_act = Activations(self.activation_type)
        self._model = self._typed_model()

    def _typed_model(self) -> tuple:
        """The weights as ``model_step.forward_tokens`` takes them: a typed list per matrix kind."""
        from numba.typed import List

        def typed(arrays):
            out = List()
            for a in arrays:
                out.append(a)
            return out

        kinds = []
        for short in _LINEAR:
            weights = [getattr(layer, short) for layer in self.layers]
            kinds += [typed([w.data for w in weights]), typed([w.scales for w in weights])]
        parts = list(self.lm_head.row_parts())
        norms = np.stack([v for layer in self.layers for v in (layer.attn_norm, layer.ffn_norm)] + [self.norm_out])
        return (norms, *kinds, typed([p[2] for p in parts]), typed([p[3] for p in parts]),
                np.array([p[1] for p in parts], np.int64))

    # -- running ------------------------------------------------------------
    def warmup(self, progress=None) -> None:
        """Compile (or load from the on-disk cache) every kernel this model uses, before the first answer."""
        from . import jit

        from .precompile import STAGE

        marker = jit.compiled_marker(self.kernel_variant)
        stage = "loading compiled CPU kernels" if marker.exists() else STAGE
        if not marker.exists():
            jit.remove_stale_caches()
        if progress:
            progress(stage, 0, 2)
        started = time.perf_counter()
        self.decode(0, 0)
        if progress:
            progress(stage, 1, 2)
        self.prefill_block(np.zeros(DECODE_PATH_MAX + 1, np.int64), 0)
        self.warmup_s = time.perf_counter() - started
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{self.warmup_s:.1f} s\n", encoding="utf-8")
        except OSError:
            pass  # a read-only data folder only costs the message
        if progress:
            progress(stage, 2, 2)

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.decode_batch([token], pos)[0]

    def decode_batch(self, tokens: Sequence[int], pos: int, slot: int = 0) -> np.ndarray:
        """Logits [T, vocab] of up to 16 tokens at positions pos.. of one slot: one compiled call, one pass
        over the weights, each row bit-identical to decoding that token alone (``model_step``)."""
        count = len(tokens)
        return self.decode_rows(tokens, np.arange(pos, pos + count), np.full(count, slot))

    def decode_rows(self, tokens: Sequence[int], positions: Sequence[int], slots: Sequence[int]) -> np.ndarray:
        """Logits [T, vocab] of up to 16 tokens, token t at ``positions[t]`` of cache slot ``slots[t]`` (several
        streams' next tokens, a stream's guesses): one pass over the weights, each row bit-identical to
        decoding that token alone after the ones before it in its slot."""
        from . import jit
        from .decode_step import embed_row
        from .model_step import MAX_TOKENS, forward_tokens

        count = len(tokens)
        if not 1 <= count <= MAX_TOKENS:
            raise EngineError(f"decode_batch takes 1 to {MAX_TOKENS} tokens, not {count}",
                              code="batch_size_invalid", params={"count": count, "most": MAX_TOKENS})
        positions, slots = np.asarray(positions, np.int64), np.asarray(slots, np.int64)
        if len(positions) != count or len(slots) != count:
            raise ValueError("decode_rows needs one position and one slot per token")
        if positions.min() < 0 or positions.max() >= self.max_seq_len:
            bad = int(positions.max())
            raise EngineError(f"position {bad} is past the context of {self.max_seq_len}",
                              code="position_past_context", params={"position": bad, "context": self.max_seq_len})
        if slots.min() < 0 or slots.max() >= self.slots:
            raise ValueError(f"cache slots are 0..{self.slots - 1}, not {slots.tolist()}")
        jit.use_threads(self.tuner.threads())  # numba's thread count is per calling thread
        start = time.perf_counter()
        cfg, x = self.config, self._x[:count]
        for t, token in enumerate(tokens):
            data, scales, row = self.embedding.find_row(int(token))
            embed_row(data, scales, row, x[t])
        forward_tokens(x, positions, slots, *self._model, self.slot_k, self.slot_v, self.cos, self.sin,
                       cfg.rms_norm_eps, cfg.num_heads, self._buffers, self._act, self._logits)
        self.tuner.record(count, time.perf_counter() - start)
        return self._logits[:count].copy()

    def _project(self, h: np.ndarray) -> np.ndarray:
        from .matvec import matvec

        logits = self._logits[0]
        act = tuple(a[:1] for a in self._act)
        for first, rows, data, scales in self.lm_head.row_parts():
            matvec(data, scales, h, act, logits[first:first + rows])
        return logits.copy()

    def _check_fits(self, tokens: int) -> None:
        if tokens > self.max_seq_len:
            raise EngineError(f"{tokens} tokens do not fit the context of {self.max_seq_len}",
                              code="tokens_past_context", params={"tokens": tokens, "context": self.max_seq_len})

    def prefill(self, ids: Sequence[int], start_pos: int, cancel: threading.Event | None = None,
                progress: Callable[[int], None] | None = None, slot: int = 0) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        self._check_fits(start_pos + len(ids))
        if len(ids) <= DECODE_PATH_MAX:
            logits = None
            for n, token in enumerate(ids):
                if cancel is not None and cancel.is_set():
                    raise PrefillCancelled(n)
                logits = self.decode_batch([int(token)], start_pos + n, slot)[0]
            return logits
        logits = None
        for begin in range(0, len(ids), PREFILL_BLOCK):
            logits = self.prefill_block(ids[begin:begin + PREFILL_BLOCK], start_pos + begin, cancel, done=begin,
                                        progress=progress, slot=slot)
        return logits

    def prefill_block(self, ids: np.ndarray, start: int, cancel: threading.Event | None = None, *, done: int = 0,
                      progress: Callable[[int], None] | None = None, slot: int = 0) -> np.ndarray:
        """One block of a slot's prompt (``ids`` at positions start..): its cache rows, and the last token's logits.

        Public for a caller that runs a prompt's blocks between other work (``step_scheduler`` puts them between
        decode steps, cut small while other streams decode): no kernel's result depends on the other tokens of its
        block, so any cut gives the logits and cache rows ``prefill`` gives. ``done`` counts the prompt's tokens
        before this block, for ``progress`` and ``PrefillCancelled``. Blocks longer than ``PREFILL_BLOCK`` work
        but need more scratch memory than ``estimate_memory`` counts.
        """
        return self.prefill_pieces([PromptPiece(np.asarray(ids), start, slot, done, progress)], cancel)[0]

    def prefill_pieces(self, pieces: Sequence["PromptPiece"], cancel: threading.Event | None = None) -> list:
        """Blocks of several slots' prompts in one pass over the weights (streams that join together): each
        piece's cache rows and last token's logits, the ones ``prefill_block`` gives it alone, since no kernel's
        result depends on the other rows of its block and attention runs per piece, over its own slot. A long
        pass of one piece stops between layers when ``cancel`` is set (PrefillCancelled)."""
        from . import jit
        from .decode_step import embed_row
        from .prefill import attend_block, matmul, rms_norm_rows, rope_rows, silu_times, write_cache

        for piece in pieces:
            self._check_fits(piece.start + len(piece.ids))
        jit.use_threads(self.tuner.steady())
        cfg, act = self.config, self._block_act
        bounds = np.cumsum([0] + [len(p.ids) for p in pieces])
        t, hd = int(bounds[-1]), cfg.head_dim
        x = np.empty((t, cfg.hidden_size), np.float32)
        for n, token in enumerate(int(i) for p in pieces for i in p.ids):
            data, scales, row = self.embedding.find_row(token)
            embed_row(data, scales, row, x[n])
        positions = np.concatenate([np.arange(p.start, p.start + len(p.ids)) for p in pieces])
        cos, sin = self.cos[positions], self.sin[positions]
        q = np.empty((t, cfg.num_heads * hd), np.float32)
        k = np.empty((t, cfg.kv_heads * hd), np.float32)
        v = np.empty_like(k)
        o = np.empty((t, cfg.hidden_size), np.float32)
        gate = np.empty((t, cfg.ffn_size), np.float32)
        up = np.empty_like(gate)
        for i, layer in enumerate(self.layers):
            if cancel is not None and cancel.is_set():
                raise PrefillCancelled(pieces[0].done)
            for p in pieces:
                if p.progress is not None:
                    p.progress(p.done + len(p.ids) * i // len(self.layers))
            hn = rms_norm_rows(x, layer.attn_norm, cfg.rms_norm_eps)
            matmul(layer.wq, hn, q, act)
            matmul(layer.wk, hn, k, act)
            matmul(layer.wv, hn, v, act)
            rope_rows(q, cfg.num_heads, hd, cos, sin)
            rope_rows(k, cfg.kv_heads, hd, cos, sin)
            attended = np.empty_like(q)
            for p, a, b in zip(pieces, bounds, bounds[1:]):
                k_cache, v_cache = self.slot_k[p.slot, i], self.slot_v[p.slot, i]
                write_cache(k_cache, v_cache, k[a:b], v[a:b], p.start, hd)
                attend_block(q[a:b], k_cache, v_cache, p.start, cfg.num_heads, attended[a:b])
            x += matmul(layer.wo, attended, o, act)
            hn = rms_norm_rows(x, layer.ffn_norm, cfg.rms_norm_eps)
            matmul(layer.w1, hn, gate, act)
            matmul(layer.w3, hn, up, act)
            silu_times(gate, up)
            x += matmul(layer.w2, gate, o, act)
        lasts = [rms_norm_rows(x[b - 1:b], self.norm_out, cfg.rms_norm_eps)[0] for b in bounds[1:]]
        return [self._project(np.ascontiguousarray(last)) for last in lasts]

    # -- the cache's rows (conversation state on disk, context shift): see kv_rows ---------------
    supports_kv_rows = True

    @property
    def kv_element_type(self) -> str:
        return element_type(self.k_cache)

    def export_kv(self, start: int, stop: int, slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return copy_rows(self.slot_k[slot], start, stop), copy_rows(self.slot_v[slot], start, stop)

    def import_kv(self, start: int, keys: np.ndarray, values: np.ndarray, slot: int = 0) -> None:
        write_rows(self.slot_k[slot], start, keys)
        write_rows(self.slot_v[slot], start, values)

    def shift_kv(self, src: int, dst: int, count: int, slot: int = 0) -> None:
        shift_rows(self.slot_k[slot], self.slot_v[slot], src, dst, count, rope_inv_frequencies(self.config))

    def close(self) -> None:
        """Drop every view into the memory map, then close the file (Windows keeps it locked otherwise).

        A traceback still held somewhere (say, a saved exception) can keep a view
        alive; then a garbage collection usually frees it, and if not the file
        closes when that last view goes.
        """
        self.layers = []
        self.lm_head = self.embedding = self._model = None
        source, self.source = getattr(self, "source", None), None
        if source is None:
            return
        try:
            source.close()
        except BufferError:
            import gc
            gc.collect()
            try:
                source.close()
            except BufferError:
                pass
