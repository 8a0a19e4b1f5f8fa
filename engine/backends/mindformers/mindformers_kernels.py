"""CPU replacements for the Ascend-only kernels MindFormers' LLaMA calls (installed by ``mindformers_patches``).

They run inside MindSpore graphs (so imports stay at module level: graph mode
cannot compile an import), using only ops that have float32 CPU kernels.
"""

from __future__ import annotations

import mindspore.common.dtype as mstype
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import initializer


def rotary_embedding(self, query, key, freqs_cis, batch_valid_length):
    """InferRotaryEmbedding.construct without ApplyRotaryPosEmb: rotate-half RoPE in plain ops.

    query/key are [batch, tokens, heads * head_dim]; cos/sin hold one row per token
    (MindFormers gathers them for the positions being computed).
    """
    cos, sin, _ = freqs_cis
    batch, tokens, _ = query.shape
    head_dim = cos.shape[-1]
    cos = cos.reshape(batch, tokens, 1, head_dim)
    sin = sin.reshape(batch, tokens, 1, head_dim)
    half = head_dim // 2

    def rotate(x):
        x = x.reshape(batch, tokens, -1, head_dim)
        rotated = ops.concat((-x[..., half:], x[..., :half]), -1)
        return (x * cos + rotated * sin).reshape(batch, tokens, -1)

    return rotate(query), rotate(key)


def paged_cache_init(self, n_heads, head_dim, n_kv_heads, kv_shape, seq_length=-1, compute_dtype=None,
                     parallel_decoding=False, chunk_prefill=False):
    """PagedAttentionMgr.__init__ without the Ascend kernels, and with one spare block.

    Slots marked -1 (padding of a fixed-size chunk) are written into the spare
    block, which no block table names, instead of being skipped by ReshapeAndCache.
    """
    nn.Cell.__init__(self)
    dtype = compute_dtype or mstype.float32
    self.n_heads, self.head_dim, self.n_kv_heads = n_heads, head_dim, n_kv_heads
    self.seq_length = seq_length
    self.is_first_iteration = True
    self.scale_value = 1.0 / float(head_dim) ** 0.5
    self.num_blocks, self.block_size = kv_shape[0], kv_shape[1]
    shape = (self.num_blocks + 1, self.block_size, n_kv_heads, head_dim)
    self.key_cache = Parameter(initializer("zeros", shape, dtype), name="key_cache", requires_grad=False)
    self.value_cache = Parameter(initializer("zeros", shape, dtype), name="value_cache", requires_grad=False)
    self.scatter = ops.ScatterNdUpdate()
    self.parallel_decoding = parallel_decoding
    self.chunk_prefill = chunk_prefill


def paged_cache_write(self, key, value, slot_mapping, batch_valid_length=None):
    """PagedAttentionMgr.construct (ReshapeAndCache): write each token's K/V at its slot."""
    spare = self.num_blocks * self.block_size
    slots = ops.select(slot_mapping < 0, ops.full_like(slot_mapping, spare), slot_mapping)
    index = ops.stack((slots // self.block_size, slots % self.block_size), -1)
    keys = key.reshape(-1, self.n_kv_heads, self.head_dim).astype(self.key_cache.dtype)
    values = value.reshape(-1, self.n_kv_heads, self.head_dim).astype(self.value_cache.dtype)
    keys_done = self.scatter(self.key_cache, index, keys)
    values_done = self.scatter(self.value_cache, index, values)
    return ops.depend(keys_done, values_done)


def paged_attention(self, query, batch_valid_length, block_tables, attn_mask=None, q_seq_lens=None):
    """PagedAttentionMgr.paged_attn (PagedAttention): softmax attention over the cached blocks.

    The blocks named in ``block_tables`` are gathered into one window of keys. In
    chunked prefill MindFormers passes ``attn_mask`` (1 = hidden) with one row per
    query token; without it (one token per call) keys past ``batch_valid_length``
    are hidden. Grouped-query attention: query head h reads key/value head h // rep.
    """
    batch, tokens, _ = query.shape
    window = block_tables.shape[1] * self.block_size
    kv_heads, head_dim, rep = self.n_kv_heads, self.head_dim, self.n_heads // self.n_kv_heads
    tables = ops.select(block_tables < 0, ops.full_like(block_tables, self.num_blocks), block_tables).reshape(-1)

    def gathered(cache):
        blocks = ops.gather(cache, tables, 0).reshape(batch, window, kv_heads, head_dim)
        return blocks.transpose(0, 2, 1, 3).reshape(batch * kv_heads, window, head_dim).astype(mstype.float32)

    keys, values = gathered(self.key_cache), gathered(self.value_cache)
    q = query.reshape(batch, tokens, kv_heads, rep, head_dim).transpose(0, 2, 3, 1, 4)
    q = q.reshape(batch * kv_heads, rep * tokens, head_dim).astype(mstype.float32)
    scores = ops.bmm(q, keys.transpose(0, 2, 1)) * self.scale_value
    scores = scores.reshape(batch, kv_heads, rep, tokens, window)
    if attn_mask is None:
        positions = ops.arange(0, window, dtype=mstype.int32).reshape(1, window)
        visible = (positions < batch_valid_length.reshape(-1, 1)).reshape(batch, 1, 1, 1, window)
    else:
        visible = (attn_mask[:, :window] == 0).reshape(1, 1, 1, tokens, window)
    scores = ops.select(ops.broadcast_to(visible, scores.shape), scores, ops.full_like(scores, -1e30))
    probs = ops.softmax(scores, -1).reshape(batch * kv_heads, rep * tokens, window)
    out = ops.bmm(probs, values).reshape(batch, kv_heads, rep, tokens, head_dim).transpose(0, 3, 1, 2, 4)
    return out.reshape(batch, tokens, self.n_heads * head_dim).astype(query.dtype)
