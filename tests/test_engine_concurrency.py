"""One engine, several callers: a cancelled prefill leaves a usable cache, and the engine's lock keeps two
answers from sharing (and corrupting) the single KV cache. Answers are checked against the numpy reference,
on both the default cpu backend and MindSpore."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import reference_llama as ref
from engine import EngineError, GenerationSettings
from fixtures import StopAfterChecks, on_each_backend

GREEDY = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=6)
EOS = 2


def reference_answer(llama2_tiny, prompt, n=GREEDY.max_new_tokens):
    _, _, weights, spec = llama2_tiny
    return ref.answer(weights, spec.hp, prompt, n, stop={EOS}, limit=1000)  # the tokenizer has 1000 pieces


@pytest.fixture(scope="module", params=["mindspore", "cpu"])
def llama2_engine(request, llama2_engine):
    """The shared LLaMA2-shaped engine, on each backend in turn."""
    return on_each_backend(request, llama2_engine)


def test_cancel_between_prefill_chunks_returns_at_once_and_keeps_the_cache_valid(llama2_engine, llama2_tiny):
    from engine.backends.cpu.cpu_executor import PREFILL_BLOCK

    # (prompt tokens, cancel checks before Stop, tokens computed by then): MindSpore checks before each of its
    # 64-token chunks (two of four run); the cpu backend before each layer of its 512-token blocks (one of two)
    length, checks, kept = {"mindspore": (200, 2, 128),
                            "cpu": (PREFILL_BLOCK + 199, llama2_tiny[3].layers, PREFILL_BLOCK)}[llama2_engine.info.executor]
    llama2_engine.reset_cache()
    prompt = [1] + [int(i) for i in np.random.default_rng(5).integers(3, 1000, length - 1)]
    tokens = []
    done = llama2_engine.complete_ids(prompt, GREEDY, on_token=lambda t, s: tokens.append(t),
                                      cancel=StopAfterChecks(checks))
    assert done.stats.finish_reason == "cancelled" and done.output_ids == [] and tokens == []
    assert done.stats.prefilled_tokens == kept  # what ran before Stop; the rest never started
    # the same engine goes on: the computed chunks are reused, the rest computed, the answer exact
    again = llama2_engine.complete_ids(prompt, GREEDY)
    assert again.stats.prefilled_tokens == len(prompt) - kept
    assert again.output_ids == reference_answer(llama2_tiny, prompt)


def test_cancel_set_before_a_long_chat_computes_nothing(llama2_engine, llama2_tiny):
    conversation = [{"role": "user", "content": "the quick brown fox " * 30}]
    first = llama2_engine.chat([{"role": "user", "content": "hello"}], GREEDY)  # the cache now holds a turn
    stop = threading.Event()
    stop.set()
    done = llama2_engine.chat(conversation, GREEDY, cancel=stop)
    assert done.stats.prompt_tokens > 128 and done.stats.prefilled_tokens == 0
    assert done.stats.finish_reason == "cancelled" and done.output_ids == [] and done.text == ""
    after = llama2_engine.chat(conversation, GREEDY)
    assert after.output_ids == reference_answer(llama2_tiny, after.prompt_ids)
    assert llama2_engine.chat([{"role": "user", "content": "hello"}], GREEDY).output_ids == first.output_ids


def test_two_threads_chatting_at_once_each_get_their_own_complete_answer(llama2_engine, llama2_tiny):
    settings = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=12)
    conversations = [[{"role": "user", "content": "hello world"}],
                     [{"role": "user", "content": "你好，今天天气怎么样"}]]
    sequential = [llama2_engine.chat(c, settings) for c in conversations]
    start, results, errors = threading.Barrier(2), {}, []

    def ask(i):
        try:
            start.wait(30)
            # a slow listener, as a GUI is: without the lock the other answer would run in between
            results[i] = llama2_engine.chat(conversations[i], settings, on_token=lambda t, s: time.sleep(0.005))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for i in range(2):
        assert results[i].output_ids == sequential[i].output_ids
        assert results[i].output_ids == reference_answer(llama2_tiny, results[i].prompt_ids, 12)
        assert results[i].stats.finish_reason == sequential[i].stats.finish_reason


def test_a_caller_that_will_not_wait_gets_engine_busy(llama2_engine):
    from engine import EngineBusy

    conversation = [{"role": "user", "content": "hello"}]
    holding, release, results = threading.Event(), threading.Event(), []

    def slow_listener(token, text):
        holding.set()
        release.wait(60)

    thread = threading.Thread(target=lambda: results.append(llama2_engine.chat(conversation, GREEDY, slow_listener)))
    thread.start()
    try:
        assert holding.wait(60)
        assert llama2_engine.busy
        with pytest.raises(EngineBusy, match="busy") as refused:
            llama2_engine.chat(conversation, GREEDY, wait=False)
        assert isinstance(refused.value, EngineError)  # front ends show it like any other engine error
        with pytest.raises(EngineBusy):
            llama2_engine.complete_ids([1, 15, 300], GREEDY, wait=False)
    finally:
        release.set()
        thread.join(60)
    assert not llama2_engine.busy and len(results) == 1
    assert llama2_engine.chat(conversation, GREEDY, wait=False).output_ids == results[0].output_ids
