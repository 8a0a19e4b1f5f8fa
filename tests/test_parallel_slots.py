"""Cache slots: tokens of several streams (different slots, different positions) in one decode step.

What ``--parallel`` rests on: a token's logits do not depend on what shares its
step or on which slot it sits in, so each stream's answer is the one it gets alone.
"""

from __future__ import annotations

import threading
import time

import model_factory as mf
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


def _long_context_model(llama2_tiny, tmp_path):
    from engine.backends.cpu.cpu_executor import PREFILL_BLOCK

    ckpt, _, _, spec = llama2_tiny
    return ckpt, mf.write_yaml(spec, tmp_path / "long_context.yaml", seq_length=2 * PREFILL_BLOCK), spec


@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_a_prompt_cut_into_small_blocks_gets_the_logits_and_cache_rows_of_big_ones(fmt, llama2_tiny, tmp_path):
    """What chunked prefill rests on: no kernel's result depends on the other tokens of its block."""
    from engine.backends.cpu.cpu_executor import PREFILL_BLOCK
    from engine.backends.step_scheduler import JOIN_PIECE

    ckpt, yml, spec = _long_context_model(llama2_tiny, tmp_path)
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt, parallel=2)
    ids = np.random.default_rng(5).integers(3, spec.vocab, PREFILL_BLOCK + 300)
    cuts = {0: PREFILL_BLOCK, 1: JOIN_PIECE - 7}     # an odd size: tiles end part-way through a block
    logits = {}
    for slot, size in cuts.items():
        for begin in range(0, len(ids), size):
            logits[slot] = ex.prefill_block(ids[begin:begin + size], begin, slot=slot)
    assert np.array_equal(logits[0], logits[1])
    big, small = ex.export_kv(0, len(ids), slot=0), ex.export_kv(0, len(ids), slot=1)
    assert all(np.array_equal(a, b) for a, b in zip(big, small))
    ex.close()


def test_a_long_prompt_joins_in_small_blocks_and_every_answer_stays_the_one_it_gets_alone(llama2_tiny, tmp_path):
    """A stream decoding while another joins with a long prompt: the prompt goes in ``JOIN_PIECE`` blocks between
    the decoding stream's steps (so that stream waits for a small block per token, not a 512-token one), and both
    answers are the ones each gets alone (where the prompt goes in 512-token blocks)."""
    from engine.backends.cpu.cpu_executor import PREFILL_BLOCK
    from engine.backends.step_scheduler import JOIN_PIECE, StepScheduler
    from engine.generation.loop import generate
    from engine.generation.sampling import SamplingSettings

    ckpt, yml, spec = _long_context_model(llama2_tiny, tmp_path)
    ex = make_executor("cpu", ckpt, yml, parallel=2)
    scheduler = StepScheduler(ex)
    greedy = SamplingSettings(greedy=True, repetition_penalty=1.0)
    rng = np.random.default_rng(8)
    short = [spec.bos] + [int(i) for i in rng.integers(3, spec.vocab, 12)]
    long = [spec.bos] + [int(i) for i in rng.integers(3, spec.vocab, PREFILL_BLOCK + 250)]
    runs = {"short": (0, short, 400), "long": (1, long, 8)}   # the short one decodes all through the long prompt

    def answer(name, on_token=None):
        slot, prompt, count = runs[name]
        scheduler.join(slot)
        try:
            return generate(scheduler.slot_executor(slot), prompt, max_new_tokens=count, sampling=greedy,
                            on_token=on_token).output_ids
        finally:
            scheduler.leave(slot)

    alone = {name: answer(name) for name in runs}
    alone_rows = ex.export_kv(0, len(long), slot=1)
    assert scheduler.pieces == 0 and scheduler.blocks == 1 + 2   # alone, the long prompt keeps its big blocks
    assert len(alone["short"]) == 400 and len(alone["long"]) == 8

    together, sent = {}, []

    def start_the_long_one(token_id, text):
        sent.append(token_id)
        if len(sent) == 3:           # the short stream is decoding (its first token came from its prompt)
            threading.Thread(target=lambda: together.update(long=answer("long"))).start()

    scheduler.join(1)                # as StreamSlots does when the request takes its slot
    together["short"] = answer("short", on_token=start_the_long_one)
    deadline = time.monotonic() + 120
    while "long" not in together and time.monotonic() < deadline:
        time.sleep(0.05)
    assert together == alone
    assert all(np.array_equal(a, b) for a, b in zip(ex.export_kv(0, len(long), slot=1), alone_rows))
    # every block of the long prompt was cut to JOIN_PIECE while the short stream decoded (the last is the rest)
    assert scheduler.pieces == len(long) // JOIN_PIECE and scheduler.blocks - 3 == 1 + -(-len(long) // JOIN_PIECE)
    scheduler.close()
    ex.close()


@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_prompt_blocks_of_several_slots_in_one_pass_get_what_each_gets_alone(fmt, llama3_chunked):
    """Streams that join together have their prompts computed in one pass (``prefill_pieces``): each block's logits
    and cache rows are the ones ``prefill_block`` gives it alone, also a block that continues a prompt."""
    from engine.backends.cpu.cpu_executor import PromptPiece

    ckpt, yml, weights, spec = llama3_chunked
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt, parallel=3)
    a, b, c = (np.asarray(p) for p in _prompts(spec, (11, 6, 23)))
    ex.prefill_block(c[:9], 0, slot=2)          # slot 2's prompt began in an earlier block
    pieces = [PromptPiece(a, 0, 0), PromptPiece(b, 0, 1), PromptPiece(c[9:], 9, 2, done=9)]
    together = ex.prefill_pieces(pieces)
    rows = [ex.export_kv(0, len(p), slot=s) for s, p in enumerate((a, b, c))]
    for slot, piece in enumerate(pieces):          # each alone, in a slot of its own again
        ex.import_kv(0, np.zeros_like(rows[slot][0]), np.zeros_like(rows[slot][1]), slot=slot)
        if slot == 2:
            ex.prefill_block(c[:9], 0, slot=2)
        alone = ex.prefill_block(piece.ids, piece.start, slot=slot)
        assert np.array_equal(together[slot], alone)
        again = ex.export_kv(0, piece.start + len(piece.ids), slot=slot)
        assert all(np.array_equal(x, y) for x, y in zip(rows[slot], again))
    if fmt == "stored":
        assert_close(together[1], ref.forward(weights, spec.hp, list(b))[-1], 1e-3)
    ex.close()


def test_streams_that_join_together_share_a_prompt_pass_and_get_the_answers_each_gets_alone(llama2_tiny):
    from engine.backends.step_scheduler import StepScheduler
    from engine.generation.loop import generate
    from engine.generation.sampling import SamplingSettings

    ckpt, yml, _, spec = llama2_tiny
    ex = make_executor("cpu", ckpt, yml, parallel=3)
    # a long gather: the test waits for every joined stream's block, however slowly the threads start
    scheduler = StepScheduler(ex, gather_s=5.0)
    greedy = SamplingSettings(greedy=True, repetition_penalty=1.0)
    prompts = _prompts(spec, (9, 20, 14))

    def answer(slot, out):
        try:
            out[slot] = generate(scheduler.slot_executor(slot), prompts[slot], max_new_tokens=12,
                                 sampling=greedy).output_ids
        finally:
            scheduler.leave(slot)

    alone = {}
    for slot in range(3):
        scheduler.join(slot)
        answer(slot, alone)
    assert scheduler.blocks == 3 and scheduler.joined_blocks == 0
    together = {}
    for slot in range(3):            # as StreamSlots does when the requests take their slots
        scheduler.join(slot)
    threads = [threading.Thread(target=answer, args=(slot, together)) for slot in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone
    assert scheduler.blocks == 3 + 1 and scheduler.joined_blocks == 2   # the three prompts in one pass
    scheduler.close()
    ex.close()
