"""The public engine API the GUI will use: streaming, cancelling, stop rules, context policy, cache reuse."""

from __future__ import annotations

import threading

import pytest

from engine import GenerationError, GenerationSettings, ModelSource, load_engine

GREEDY = GenerationSettings(max_new_tokens=24, greedy=True, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def engine(llama2_tiny, spm_model):
    ckpt, yml, _, _ = llama2_tiny
    eng = load_engine(ModelSource(version=2, config=yml, tokenizer=spm_model, checkpoint=ckpt))
    yield eng
    eng.close()


def _chat(engine, text, settings=GREEDY, **kw):
    engine.reset_cache()
    return engine.chat([{"role": "user", "content": text}], settings, **kw)


def test_streamed_pieces_add_up_to_the_answer(engine):
    pieces = []
    result = _chat(engine, "你好 hello", on_token=lambda tok, text: pieces.append(text))
    assert "".join(pieces) == result.text
    assert result.text == engine.tokenizer.decode(result.output_ids)
    assert result.stats.finish_reason in ("length", "stop")
    assert result.stats.generated_tokens == len(result.output_ids)


def test_cancel_from_another_thread_stops_the_answer(engine):
    cancel, first_token, done = threading.Event(), threading.Event(), {}
    settings = GenerationSettings(max_new_tokens=10_000, greedy=True, repetition_penalty=1.0)

    def worker():
        done["result"] = _chat(engine, "tell me a long story", settings,
                               on_token=lambda tok, text: first_token.set(), cancel=cancel)

    thread = threading.Thread(target=worker)
    thread.start()
    assert first_token.wait(120)
    cancel.set()
    thread.join(120)
    result = done["result"]
    assert result.stats.finish_reason == "cancelled"
    assert 1 <= len(result.output_ids) < engine.context_length


def test_max_new_tokens_is_respected(engine):
    result = _chat(engine, "count", GenerationSettings(max_new_tokens=5, greedy=True, repetition_penalty=1.0))
    assert len(result.output_ids) == 5 and result.stats.finish_reason == "length"


def test_stop_string_cuts_the_text(engine):
    full = _chat(engine, "hello world").text
    assert len(full) > 6
    stop = full[3:6]
    cut = _chat(engine, "hello world", GenerationSettings(max_new_tokens=24, greedy=True, repetition_penalty=1.0,
                                                         stop_strings=(stop,)))
    assert cut.stats.finish_reason == "stop_string"
    assert cut.text == full[:full.index(stop)]


def test_same_seed_same_answer(engine):
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.9, seed=7)
    assert _chat(engine, "hi", settings).output_ids == _chat(engine, "hi", settings).output_ids


def test_next_turn_reuses_the_cached_prefix_and_gives_the_same_answer(engine):
    first = [{"role": "user", "content": "hello"}]
    engine.reset_cache()
    answer = engine.chat(first, GREEDY)
    second = first + [{"role": "assistant", "content": answer.text}, {"role": "user", "content": "and 你好?"}]
    reused = engine.chat(second, GREEDY)
    assert reused.stats.prefilled_tokens < reused.stats.prompt_tokens
    engine.reset_cache()
    fresh = engine.chat(second, GREEDY)
    assert fresh.stats.prefilled_tokens == fresh.stats.prompt_tokens
    assert reused.output_ids == fresh.output_ids


def test_long_conversation_drops_oldest_turns_but_keeps_the_system_prompt(engine):
    messages = [{"role": "system", "content": "be brief"}]
    for i in range(30):
        messages += [{"role": "user", "content": f"question number {i} about the weather today"},
                     {"role": "assistant", "content": f"answer number {i} it is sunny and warm"}]
    messages.append({"role": "user", "content": "last question"})
    prompt = engine.prepare_chat(messages, GREEDY.max_new_tokens)
    kept, ids = prompt.messages, prompt.ids
    assert prompt.dropped == len(messages) - len(kept) > 0
    assert len(ids) <= engine.context_length - GREEDY.max_new_tokens
    assert kept[0] == messages[0] and kept[-1] == messages[-1] and len(kept) < len(messages)
    assert [m["role"] for m in kept[1:]] == ["user", "assistant"] * ((len(kept) - 2) // 2) + ["user"]
    result = engine.chat(messages, GREEDY)
    assert result.stats.prompt_tokens == len(ids) and result.dropped_messages == prompt.dropped


def test_empty_and_oversized_messages_are_refused(engine):
    with pytest.raises(GenerationError, match="empty"):
        engine.chat([{"role": "user", "content": "  "}], GREEDY)
    with pytest.raises(GenerationError, match="too long"):
        engine.chat([{"role": "user", "content": "weather " * 400}], GREEDY)
    with pytest.raises(GenerationError, match="empty"):
        engine.complete_ids([], GREEDY)
