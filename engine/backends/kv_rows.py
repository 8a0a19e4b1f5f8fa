"""Cached keys and values as rows: copied out, written back, and moved to other positions.

Every executor that keeps its KV cache as arrays ``[..., kv_head, position, head_dim]``
(the cpu executor: ``[layer, kv_head, position, head_dim]``, fp16 bits in uint16 or
float32; MindSpore: one float32 ``[kv_head, position, head_dim]`` per layer) uses these,
so a conversation's state can be saved, restored and shifted the same way everywhere.

Keys are cached after RoPE (rotate-half layout). RoPE turns the pair (x_i, x_{i+d/2}) of
a key at position p by the angle p * f_i, and rotations add up, so a key moved from
position p to p + delta is exactly the key rotated once more by delta * f_i (llama.cpp's
"K-shift"). Values carry no position and are only moved. The only error is rounding: a
float16 cache gains at most about one fp16 step per moved key.
"""

from __future__ import annotations

import numpy as np

ELEMENT_TYPES = {"float16": np.float16, "float32": np.float32}
_CHUNK = 512  # positions rotated at a time, so the float32 scratch of a long shift stays small


def element_type(cache: np.ndarray) -> str:
    """"float16" or "float32": what a cache array holds (uint16 arrays hold fp16 bits)."""
    return "float16" if cache.dtype in (np.uint16, np.float16) else "float32"


def _typed(cache: np.ndarray) -> np.ndarray:
    return cache.view(np.float16) if cache.dtype == np.uint16 else cache


def copy_rows(cache: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A copy of positions start..stop-1, as float16 or float32 (never raw uint16 bits)."""
    return np.ascontiguousarray(_typed(cache)[..., start:stop, :])


def write_rows(cache: np.ndarray, start: int, rows: np.ndarray) -> None:
    """Store ``rows`` ([..., kv_head, n, head_dim], any float type) at positions start..start+n-1."""
    target = _typed(cache)
    n = rows.shape[-2]
    if rows.shape[:-2] != target.shape[:-2] or rows.shape[-1] != target.shape[-1]:
        raise ValueError(f"rows of shape {rows.shape} do not fit a cache of shape {cache.shape}")
    if start < 0 or start + n > target.shape[-2]:
        raise ValueError(f"positions {start}..{start + n - 1} are outside a cache of {target.shape[-2]}")
    target[..., start:start + n, :] = rows


def rotation(inv_freq: np.ndarray, delta: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (float32, [head_dim/2]) of RoPE's angles for a move of ``delta`` positions."""
    angles = float(delta) * np.asarray(inv_freq, np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotate_keys(keys: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Keys ([..., head_dim], rotate-half layout) turned by the given angles, as float32."""
    half = keys.shape[-1] // 2
    x = keys.astype(np.float32)
    x0, x1 = x[..., :half].copy(), x[..., half:].copy()
    x[..., :half] = x0 * cos - x1 * sin
    x[..., half:] = x1 * cos + x0 * sin
    return x


def shift_rows(k_cache: np.ndarray, v_cache: np.ndarray, src: int, dst: int, count: int,
               inv_freq: np.ndarray) -> None:
    """Move positions src..src+count-1 to dst..dst+count-1: keys re-rotated by dst - src, values copied.

    The ranges may overlap; rows are moved in an order that never reads a row already overwritten.
    """
    if count <= 0 or src == dst:
        return
    size = k_cache.shape[-2]
    if min(src, dst) < 0 or max(src, dst) + count > size:
        raise ValueError(f"a move of {count} positions from {src} to {dst} leaves a cache of {size}")
    cos, sin = rotation(inv_freq, dst - src)
    keys, values = _typed(k_cache), _typed(v_cache)
    starts = range(0, count, _CHUNK)
    for first in (starts if dst < src else reversed(starts)):
        n = min(_CHUNK, count - first)
        a, b = src + first, dst + first
        keys[..., b:b + n, :] = rotate_keys(keys[..., a:a + n, :], cos, sin)
        values[..., b:b + n, :] = values[..., a:a + n, :]
