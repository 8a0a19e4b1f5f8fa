"""LLaMA as MindSpore Cells, with MindFormers' parameter names and a static KV cache.

One ``construct`` serves both prefill and decode: it takes a fixed-size block
of token ids (a prefill chunk, or a single token), their first position and
the row whose logits are wanted. The cache is a Parameter written in place
with ScatterNdUpdate. Attention reads a window of the cache whose length is a
compile-time constant from a few buckets (masking positions not yet written),
so graph mode compiles once per (block size, bucket) and a short chat costs
little attention time and memory.
"""

from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from engine.config import ModelConfig, rope_inv_frequencies

MS_DTYPES = {"float32": ms.float32, "float16": ms.float16}
_NEG = -1e30


def rope_tables(cfg: ModelConfig, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin in rotate-half layout: frequency i repeated at i and i + head_dim/2."""
    angles = np.outer(np.arange(positions, dtype=np.float64), rope_inv_frequencies(cfg))
    angles = np.concatenate([angles, angles], axis=1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _param(shape, dtype) -> Parameter:
    return Parameter(initializer("zeros", shape, dtype), requires_grad=False)


class Linear(nn.Cell):
    """y = x @ weight.T with weight stored [out, in], as in the checkpoints."""

    def __init__(self, out_dim: int, in_dim: int, dtype):
        super().__init__()
        self.weight = _param((out_dim, in_dim), dtype)
        self.matmul = ops.MatMul(transpose_b=True)
        self.dtype = dtype

    def construct(self, x):
        return self.matmul(x.astype(self.dtype), self.weight).astype(ms.float32)


class RMSNorm(nn.Cell):
    """Always float32: the checkpoints keep norm weights in float32 for a reason."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = _param((dim,), ms.float32)
        self.eps = eps

    def construct(self, x):
        variance = ops.mean(x * x, -1, keep_dims=True)
        return x * ops.rsqrt(variance + self.eps) * self.weight


class Embedding(nn.Cell):
    def __init__(self, vocab: int, dim: int, dtype):
        super().__init__()
        self.embedding_weight = _param((vocab, dim), dtype)

    def construct(self, ids):
        return ops.gather(self.embedding_weight, ids, 0).astype(ms.float32)


class Attention(nn.Cell):
    def __init__(self, cfg: ModelConfig, cache_len: int, dtype):
        super().__init__()
        h, hd, kvh = cfg.hidden_size, cfg.head_dim, cfg.kv_heads
        self.n_heads, self.kv_heads, self.head_dim = cfg.num_heads, kvh, hd
        self.rep = cfg.num_heads // kvh
        self.wq = Linear(h, h, dtype)
        self.wk = Linear(kvh * hd, h, dtype)
        self.wv = Linear(kvh * hd, h, dtype)
        self.wo = Linear(h, h, dtype)
        self.k_cache = _param((kvh, cache_len, hd), ms.float32)
        self.v_cache = _param((kvh, cache_len, hd), ms.float32)
        self.scatter = ops.ScatterNdUpdate()
        self.scores = ops.BatchMatMul(transpose_b=True)
        self.weighted = ops.BatchMatMul()
        self.scale = 1.0 / float(np.sqrt(hd))

    @staticmethod
    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = ops.concat((-x[..., half:], x[..., :half]), -1)
        return x * cos + rotated * sin

    def construct(self, x, cos, sin, cache_index, mask, window: int):
        c = x.shape[0]
        q = self.wq(x).reshape(c, self.n_heads, self.head_dim)
        k = self.wk(x).reshape(c, self.kv_heads, self.head_dim)
        v = self.wv(x).reshape(c, self.kv_heads, self.head_dim)
        q = self._rope(q, cos, sin)
        k = self._rope(k, cos, sin)
        # cache_index [kvh, c, 2] holds (head, position) pairs
        k_done = self.scatter(self.k_cache, cache_index, k.transpose(1, 0, 2))
        v_done = self.scatter(self.v_cache, cache_index, v.transpose(1, 0, 2))
        keys = ops.depend(self.k_cache, k_done)[:, :window, :]
        values = ops.depend(self.v_cache, v_done)[:, :window, :]
        q = q.reshape(c, self.kv_heads, self.rep, self.head_dim).transpose(1, 2, 0, 3)
        q = q.reshape(self.kv_heads, self.rep * c, self.head_dim)
        scores = self.scores(q, keys) * self.scale                      # [kvh, rep*c, S]
        scores = scores.reshape(self.kv_heads, self.rep, c, -1) + mask  # mask [c, S]
        probs = ops.softmax(scores, -1).reshape(self.kv_heads, self.rep * c, -1)
        out = self.weighted(probs, values)                              # [kvh, rep*c, hd]
        out = out.reshape(self.kv_heads, self.rep, c, self.head_dim).transpose(2, 0, 1, 3)
        return self.wo(out.reshape(c, self.n_heads * self.head_dim))


class FeedForward(nn.Cell):
    def __init__(self, cfg: ModelConfig, dtype):
        super().__init__()
        self.w1 = Linear(cfg.ffn_size, cfg.hidden_size, dtype)
        self.w2 = Linear(cfg.hidden_size, cfg.ffn_size, dtype)
        self.w3 = Linear(cfg.ffn_size, cfg.hidden_size, dtype)

    def construct(self, x):
        return self.w2(ops.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Cell):
    def __init__(self, cfg: ModelConfig, cache_len: int, dtype):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(cfg, cache_len, dtype)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.feed_forward = FeedForward(cfg, dtype)

    def construct(self, x, cos, sin, cache_index, mask, window: int):
        x = x + self.attention(self.attention_norm(x), cos, sin, cache_index, mask, window)
        return x + self.feed_forward(self.ffn_norm(x))


class LlamaModel(nn.Cell):
    def __init__(self, cfg: ModelConfig, cache_len: int, dtype):
        super().__init__()
        self.tok_embeddings = Embedding(cfg.vocab_size, cfg.hidden_size, dtype)
        self.layers = nn.CellList([DecoderLayer(cfg, cache_len, dtype) for _ in range(cfg.num_layers)])
        self.norm_out = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Cell):
    """Names match MindFormers: model.layers.{i}.attention.wq.weight, lm_head.weight, ..."""

    def __init__(self, cfg: ModelConfig, cache_len: int, dtype_name: str = "float32"):
        super().__init__()
        dtype = MS_DTYPES[dtype_name]
        self.tied = cfg.tie_word_embeddings
        self.model = LlamaModel(cfg, cache_len, dtype)
        if not self.tied:
            self.lm_head = Linear(cfg.vocab_size, cfg.hidden_size, dtype)
        cos, sin = rope_tables(cfg, cache_len)
        self.cos_table = Tensor(cos)
        self.sin_table = Tensor(sin)
        self.key_positions = Tensor(np.arange(cache_len, dtype=np.int32))
        self.cache_len = cache_len
        self.kv_heads = cfg.kv_heads
        self.head_matmul = ops.MatMul(transpose_b=True)
        self.dtype = dtype

    def construct(self, ids, start_pos, last_row, window: int):
        """ids [c] int32, start_pos [1] int32, last_row [1] int32 -> logits [1, vocab].

        ``window`` (a compile-time constant) is how many cache positions attention
        reads: the executor rounds the conversation's length up to a bucket, so
        a short chat neither reads nor allocates attention for the whole context.
        """
        c = ids.shape[0]
        rows = ops.arange(0, c, dtype=ms.int32)
        positions = start_pos + rows
        cos = ops.gather(self.cos_table, positions, 0).reshape(c, 1, -1)
        sin = ops.gather(self.sin_table, positions, 0).reshape(c, 1, -1)
        # Padding rows (after last_row) are written to the spare positions at the cache's end, which no
        # query may see: the rows after the block (e.g. a moved stretch of a conversation) stay intact.
        slots = ops.select(rows <= last_row, positions, self.cache_len - c + rows)
        heads = ops.arange(0, self.kv_heads, dtype=ms.int32)
        cache_index = ops.stack((ops.broadcast_to(heads.reshape(-1, 1), (self.kv_heads, c)),
                                 ops.broadcast_to(slots.reshape(1, -1), (self.kv_heads, c))), -1)
        allowed = self.key_positions[:window].reshape(1, -1) <= positions.reshape(-1, 1)
        mask = ops.select(allowed, ops.zeros_like(allowed.astype(ms.float32)),
                          ops.full_like(allowed.astype(ms.float32), _NEG))
        x = self.model.tok_embeddings(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, cache_index, mask, window)
        x = self.model.norm_out(ops.gather(x, last_row, 0))
        if self.tied:
            weight = self.model.tok_embeddings.embedding_weight
        else:
            weight = self.lm_head.weight
        return self.head_matmul(x.astype(self.dtype), weight).astype(ms.float32)
