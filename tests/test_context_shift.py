"""A conversation that outgrows the context: the kept turns' KV rows are moved, not recomputed.

On one-layer models (both shapes) a moved cache holds exactly what a fresh prefill would, so the answer
after a shift must be the numpy reference's. On the two-layer test checkpoints the kept turns' deeper
rows still carry what the dropped turns contributed (as with llama.cpp's context shift), so there the
tests check the cost (only the new tokens are computed) and that turning the shift off recomputes to
exactly the reference's answer.
"""

from __future__ import annotations

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from engine import ExecutorOptions, GenerationSettings, ModelSource, load_engine
from engine.text.tokenizers import load_tokenizer
from fixtures import chat_engine, make_executor

GREEDY = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=8)


def _ids(n, seed):
    return [int(i) for i in np.random.default_rng(seed).integers(3, 32000, n)]


def _two_turns(engine):
    """Turn 1: system + A + B. Turn 2: A dropped, system + B + answer + C: B and the answer are moved back."""
    system, a, b, c = _ids(10, 1), _ids(40, 2), _ids(60, 3), _ids(8, 4)
    engine.reset_cache()
    answer = engine.complete_ids(system + a + b, GREEDY).output_ids
    second = system + b + answer + c
    return second, engine.complete_ids(second, GREEDY), len(a)


@pytest.mark.parametrize("spec", [mf.ONE_LAYER_MHA, mf.ONE_LAYER_GQA], ids=["mha-fp16", "gqa-bf16"])
@pytest.mark.parametrize("backend", ["cpu", "mindspore"])
def test_after_a_shift_a_one_layer_model_answers_like_the_reference(spec, backend):
    ckpt, yml, weights = mf.cached_model(spec)
    engine = chat_engine(make_executor(backend, ckpt, yml))
    try:
        second, reply, dropped = _two_turns(engine)
        assert reply.stats.shifted_tokens >= 60 and reply.stats.prefilled_tokens <= 9
        assert reply.output_ids == ref.answer(weights, spec.hp, second, GREEDY.max_new_tokens, stop={spec.eos})
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["cpu", "mindspore"])
def test_on_deeper_models_the_shift_costs_only_the_new_tokens_and_can_be_turned_off(llama2_tiny, backend):
    ckpt, yml, weights, spec = llama2_tiny
    engine = chat_engine(make_executor(backend, ckpt, yml))
    try:
        second, reply, _ = _two_turns(engine)
        assert reply.stats.shifted_tokens >= 60 and reply.stats.prefilled_tokens <= 9
        assert reply.stats.cached_tokens == 10 + reply.stats.shifted_tokens
        engine.context_shift = False                  # recompute the kept turns instead: exact
        _, exact, _ = _two_turns(engine)
        assert exact.stats.shifted_tokens == 0 and exact.stats.prefilled_tokens == len(second) - 10
        assert exact.output_ids == ref.answer(weights, spec.hp, second, GREEDY.max_new_tokens, stop={spec.eos})
    finally:
        engine.close()


def test_a_chat_that_outgrows_the_context_moves_its_kept_turns(llama2_tiny, spm_model):
    """Through the chat API with the LLaMA2 template: the turn that overflows computes its new question (and the
    first kept question, which now carries the system prompt), not the kept turns."""
    ckpt, yml, _, _ = llama2_tiny
    engine = load_engine(ModelSource(2, ckpt, spm_model, yml, template="llama2"), ExecutorOptions(backend="cpu"))
    try:
        settings = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=12)
        history = [{"role": "system", "content": "Be brief."}]
        replies = []
        for turn in range(14):
            history.append({"role": "user", "content": f"the quick brown fox number {turn} jumps over the dog"})
            reply = engine.chat(history, settings)
            replies.append(reply)
            history.append({"role": "assistant", "content": reply.text})
        dropped = [r.dropped_messages for r in replies]
        first_drop = next(t for t, d in enumerate(dropped) if d)
        overflow = replies[first_drop]
        assert overflow.stats.shifted_tokens > 40, overflow.stats
        assert overflow.stats.prefilled_tokens < overflow.stats.prompt_tokens // 2
        later = [r for r in replies[first_drop + 1:] if r.dropped_messages == overflow.dropped_messages]
        assert later and all(r.stats.shifted_tokens == 0 and r.stats.cached_tokens > r.stats.prompt_tokens // 2
                             for r in later)
        assert all(r.stats.prompt_tokens + settings.max_new_tokens <= engine.context_length for r in replies)
    finally:
        engine.close()


def test_a_base_model_transcript_stops_where_the_next_turn_would_start(llama2_tiny, spm_model):
    """``template="base"``: a plain User:/Assistant: transcript whose stop strings end the answer at the next turn."""
    ckpt, yml, _, _ = llama2_tiny
    engine = load_engine(ModelSource(2, ckpt, spm_model, yml, template="base"), ExecutorOptions(backend="cpu"))
    tok = load_tokenizer(spm_model, 2)
    try:
        assert engine.info.kind == "base" and engine.info.template == "base"
        prompt = engine.prepare_chat([{"role": "system", "content": "You help."},
                                      {"role": "user", "content": "hello"},
                                      {"role": "assistant", "content": "hi there"},
                                      {"role": "user", "content": "how are you"}])
        assert tok.decode(prompt.ids) == "You help.\n\nUser: hello\nAssistant: hi there\nUser: how are you\nAssistant:"
        assert prompt.ids[0] == tok.bos_id and "\nUser:" in prompt.stop_strings
    finally:
        engine.close()
