"""Cache slots: tokens of several streams (different slots, different positions) in one decode step.

What ``--parallel`` rests on: a token's logits do not depend on what shares its
step or on which slot it sits in, so each stream's answer is the one it gets alone.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_llama as ref
from fixtures import assert_close, make_executor


def _prompts(spec, lengths=(9, 20, 4)):
    rng = np.random.default_rng(21)
    return [[spec.bos] + [int(i) for i in rng.integers(3, spec.vocab, n)] for n in lengths]


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_rows_of_different_slots_in_one_step_get_the_logits_each_gets_alone(model, fmt, request):
    ckpt, yml, weights, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt, parallel=3)
    prompts = _prompts(spec)
    # slot 1 sends a token and a guess after it; the others one token each, all at their own positions
    rows = [(2, 7), (0, 33), (1, 5), (1, 900)]
    for slot, prompt in enumerate(prompts):
        ex.prefill(prompt, 0, slot=slot)
    together = ex.decode_rows([t for _, t in rows], [len(prompts[s]) + (i == 3) for i, (s, _) in enumerate(rows)],
                              [s for s, _ in rows])
    alone = []   # each token decoded by itself in slot 0, the slot a single stream uses
    for i, (slot, token) in enumerate(rows):
        ex.prefill(prompts[slot], 0)
        if i == 3:                        # slot 1's second row comes after its first token
            ex.decode(5, len(prompts[slot]))
        alone.append(ex.decode(token, len(prompts[slot]) + (i == 3)))
    assert np.array_equal(together, np.stack(alone))
    if fmt == "stored" and model == "llama2_tiny":   # (the GQA model's 2.1M-token reference costs half a minute)
        assert_close(together[3], ref.forward(weights, spec.hp, prompts[1] + [5, 900])[-1], 1e-3)
    ex.close()


def test_prefill_and_rows_of_one_slot_leave_the_others_alone(llama3_chunked):
    """Prefill, export and shift work on their own slot only: the other slots' rows stay as they were."""
    ckpt, yml, weights, spec = llama3_chunked
    ex = make_executor("cpu", ckpt, yml, parallel=2)
    a, b = _prompts(spec, (12, 15))[:2]
    ex.prefill(a, 0, slot=0)
    before = ex.export_kv(0, len(a), slot=0)
    ex.prefill(b, 0, slot=1)
    ex.shift_kv(4, 2, 8, slot=1)
    after = ex.export_kv(0, len(a), slot=0)
    assert all(np.array_equal(x, y) for x, y in zip(before, after))
    keys, values = ex.export_kv(0, len(a), slot=0)
    ex.import_kv(0, keys, values, slot=1)
    assert np.array_equal(ex.decode_batch([9], len(a), slot=1), ex.decode_batch([9], len(a), slot=0))
    ex.close()


def test_the_memory_estimate_counts_a_cache_per_stream(llama3_chunked):
    from engine.backends.cpu.cpu_executor import CpuExecutor
    from engine.backends.registry import ExecutorOptions
    from engine.config import load_config
    from engine.weights.validation import open_weights

    ckpt, yml, _, _ = llama3_chunked
    cfg = load_config(yml)
    with open_weights(ckpt) as source:
        one = CpuExecutor.estimate_memory(cfg, source, ExecutorOptions(max_seq_len=cfg.seq_length, parallel=1))
        four = CpuExecutor.estimate_memory(cfg, source, ExecutorOptions(max_seq_len=cfg.seq_length, parallel=4))
    assert one.kv_cache > 0 and four.kv_cache == 4 * one.kv_cache
    assert four.total - one.total == 3 * one.kv_cache and "4 parallel streams" in four.description
