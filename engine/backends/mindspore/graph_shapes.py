"""The few input shapes of graph-compiled executors, so MindSpore compiles a handful of graphs.

MindSpore compiles one graph per input shape. A prompt therefore runs in chunks
of PREFILL_CHUNK tokens, a short one padded to SHORT_CHUNK instead (prefill is
compute-bound, so padding costs time), and attention reads a window of the
cache rounded up to a bucket (MIN_WINDOW, doubling, capped at the cache): a
graph per bucket is compiled when a conversation first reaches it, and a short
chat neither reads nor allocates attention for the whole context.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np

from engine.backends.executor import PrefillCancelled
from engine.errors import EngineError

PREFILL_CHUNK = 64
SHORT_CHUNK = 16
MIN_WINDOW = 512
WARMUP_BLOCKS = (PREFILL_CHUNK, SHORT_CHUNK, 1)  # every block size prefill and decode use

RunFn = Callable[[np.ndarray, int, int], np.ndarray]  # (padded ids, first position, real count) -> logits


def window_bucket(end: int, capacity: int) -> int:
    """Smallest bucket (MIN_WINDOW, doubling, capped at ``capacity``) holding positions < end."""
    window = MIN_WINDOW
    while window < end and window < capacity:
        window *= 2
    return min(window, capacity)


def prefill_in_chunks(ids: Sequence[int], start_pos: int, max_seq_len: int, cancel: threading.Event | None,
                      run: RunFn, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Run ``ids`` from ``start_pos`` one padded chunk at a time; logits of the last id.

    ``cancel`` is checked before each chunk; a set event raises ``PrefillCancelled``
    with the number of tokens already in the cache. ``progress(done)`` hears of each chunk.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if start_pos + len(ids) > max_seq_len:
        raise EngineError(f"{start_pos + len(ids)} tokens do not fit the context of {max_seq_len}",
                          code="tokens_past_context", params={"tokens": start_pos + len(ids), "context": max_seq_len})
    logits = None
    for begin in range(0, len(ids), PREFILL_CHUNK):
        if cancel is not None and cancel.is_set():
            raise PrefillCancelled(begin)
        if progress is not None:
            progress(begin)
        chunk = ids[begin:begin + PREFILL_CHUNK]
        padded = np.zeros(SHORT_CHUNK if len(chunk) <= SHORT_CHUNK else PREFILL_CHUNK, np.int32)
        padded[:len(chunk)] = chunk
        logits = run(padded, start_pos + begin, len(chunk))
    return logits
