"""Conversation states on disk through the public engine: restored, checked, refused when wrong, bounded.

Real engines (``load_engine``, cpu and MindSpore) on both test checkpoints, real files. Greedy tokens
after a restored state must be the numpy reference's (LLaMA2-shaped) or a full prefill's (LLaMA3-shaped,
whose 2.1M-token vocabulary makes the reference too slow to run token by token; the full prefill itself
is checked against the reference in test_model_correctness). A state that is damaged, cut short or
written for another model is ignored, with a log line, and the answer is still right.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pytest

import reference_llama as ref
from engine import ExecutorOptions, GenerationSettings, ModelSource, load_engine
from engine.generation.prompt_cache import PromptStateFile, StateLayout
from engine.generation.prompt_states import states_size
from fixtures import ROOT

GREEDY = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=6)


def _ids(n, seed, vocab=32000):
    return [int(i) for i in np.random.default_rng(seed).integers(3, vocab, n)]


@pytest.fixture(scope="module", params=["cpu", "mindspore"])
def engines(request, llama2_tiny, llama3_chunked):
    """One engine per checkpoint on the backend, loaded as the front ends load them (raw ids: no tokenizer)."""
    made = {}
    for name, (ckpt, yml, _, _) in (("llama2", llama2_tiny), ("llama3", llama3_chunked)):
        made[name] = load_engine(ModelSource(2 if name == "llama2" else 3, ckpt, config=yml, need_tokenizer=False),
                                 ExecutorOptions(backend=request.param))
    yield made
    for engine in made.values():
        engine.close()


def _expected(model, engine, prompt):
    """What a greedy answer to ``prompt`` must be: the reference's (LLaMA2-shaped) or a full prefill's."""
    ckpt, yml, weights, spec = model
    if spec.vocab <= 32000:
        return ref.answer(weights, spec.hp, prompt, GREEDY.max_new_tokens, stop={spec.eos})
    engine.reset_cache()
    return engine.complete_ids(prompt, GREEDY).output_ids


def _conversation(engine, state, seed):
    """A first turn saved to ``state``; the second turn's prompt (first prompt + answer + a new question)."""
    first = _ids(40, seed)
    answer = engine.complete_ids(first, GREEDY, state_file=state).output_ids
    assert engine.flush_states(timeout=60)
    return first + answer + _ids(12, seed + 1)


def _index(engine, state):
    cfg = engine.config
    layout = StateLayout(cfg.num_layers, cfg.kv_heads, cfg.head_dim, engine.executor.kv_element_type)
    return PromptStateFile(state, engine.info.state_identity, layout).scan()


@pytest.mark.parametrize("name", ["llama2", "llama3"])
def test_a_restored_state_answers_like_a_full_prefill(engines, name, llama2_tiny, llama3_chunked, tmp_path):
    engine, model = engines[name], llama2_tiny if name == "llama2" else llama3_chunked
    state = tmp_path / "对话.kvstate"
    second = _conversation(engine, state, seed=10)
    saved = _index(engine, state).ids                  # the first turn and its answer (but its last token)
    assert len(saved) >= 40 and saved == second[:len(saved)]
    expected = _expected(model, engine, second)
    engine.reset_cache()                               # as after a restart: nothing in memory
    reply = engine.complete_ids(second, GREEDY, state_file=state)
    assert reply.output_ids == expected
    assert reply.stats.restored_tokens == len(saved) == reply.stats.cached_tokens
    assert reply.stats.prefilled_tokens == len(second) - len(saved)
    # the second turn's rows were appended: the third turn finds them all on disk
    assert engine.flush_states(timeout=60)
    index = _index(engine, state)
    assert len(index.segments) == 2 and index.ids == (second + reply.output_ids)[:len(index.ids)]
    assert len(index.ids) >= len(second)


def _two_segment_state(engine, state):
    """A state of two segments (two turns), and the third turn's prompt; the engine's memory then empty."""
    second = _conversation(engine, state, seed=20)
    reply = engine.complete_ids(second, GREEDY, state_file=state)
    assert engine.flush_states(timeout=60)
    engine.reset_cache()
    index = _index(engine, state)
    assert len(index.segments) == 2
    return second + reply.output_ids + _ids(5, 22), index


@pytest.mark.parametrize("damage", ["cut_in_last_segment", "flipped_byte_in_second_rows", "flipped_byte_in_first_rows",
                                    "garbage"])
def test_a_damaged_or_truncated_state_is_ignored_and_the_answer_is_right(engines, llama2_tiny, tmp_path, damage,
                                                                        caplog):
    engine = engines["llama2"]
    state = tmp_path / "state.kvstate"
    third, index = _two_segment_state(engine, state)
    first, second = index.segments
    data = bytearray(state.read_bytes())
    if damage == "cut_in_last_segment":
        data = data[:second.offset + 1000]
        usable = first.count
    elif damage == "flipped_byte_in_second_rows":
        data[second.offset + 4 * second.count + 100] ^= 0x40
        usable = first.count
    elif damage == "flipped_byte_in_first_rows":
        data[first.offset + 4 * first.count + 100] ^= 0x40
        usable = 0
    else:
        data = bytearray(b"not a state at all " * 1000)
        usable = 0
    state.write_bytes(bytes(data))
    expected = _expected(llama2_tiny, engine, third)
    engine.reset_cache()
    with caplog.at_level(logging.WARNING, logger="engine.prompt_cache"):
        reply = engine.complete_ids(third, GREEDY, state_file=state)
    assert reply.output_ids == expected
    assert reply.stats.restored_tokens == usable
    assert "saved state" in caplog.text and str(state.name) in caplog.text


def test_a_state_of_another_model_or_kv_type_is_ignored(engines, llama2_tiny, tmp_path, caplog):
    """Same checkpoint, other KV element type: rows of another precision must never be read back."""
    engine = engines["llama2"]
    ckpt, yml, _, _ = llama2_tiny
    other_kv = "float32" if engine.executor.kv_element_type == "float16" else "float16"
    other = load_engine(ModelSource(2, ckpt, config=yml, need_tokenizer=False),
                        ExecutorOptions(backend="cpu", kv_cache=other_kv))
    try:
        if other.info.state_identity == engine.info.state_identity:
            pytest.skip("this backend has only one KV element type")
        state = tmp_path / "state.kvstate"
        second = _conversation(other, state, seed=30)
        expected = _expected(llama2_tiny, engine, second)
        engine.reset_cache()
        with caplog.at_level(logging.WARNING, logger="engine.prompt_cache"):
            reply = engine.complete_ids(second, GREEDY, state_file=state)
        assert reply.output_ids == expected and reply.stats.restored_tokens == 0
        assert "written for another model" in caplog.text
    finally:
        other.close()


def test_prefill_progress_is_reported_up_to_the_tokens_computed(engines):
    engine = engines["llama2"]
    engine.reset_cache()
    seen = []
    prompt = _ids(200, 40)
    reply = engine.complete_ids(prompt, GREEDY, on_prefill=lambda done, total, _restored: seen.append((done, total)))
    assert seen[0] == (0, 200) and seen[-1] == (200, 200)
    assert any(0 < done < 200 for done, _ in seen), seen          # also while it computes
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert reply.stats.prefilled_tokens == 200 and reply.stats.cached_tokens == 0


# -- the folder's size bound ---------------------------------------------------------------------------

def test_the_least_recently_used_states_are_evicted_at_the_size_limit(llama2_tiny, tmp_path):
    ckpt, yml, _, _ = llama2_tiny
    engine = load_engine(ModelSource(2, ckpt, config=yml, need_tokenizer=False), ExecutorOptions(backend="cpu"))
    try:
        folder = tmp_path / "states"
        prompts = {key: _ids(60, seed) for seed, key in enumerate("abcd")}

        def ask(key, budget):
            engine.reset_cache()
            engine.complete_ids(prompts[key], GREEDY, state_file=folder / f"{key}.kvstate", state_budget=budget)
            assert engine.flush_states(timeout=60)
            time.sleep(0.05)                          # distinct use times, whatever the file system's clock
        ask("a", None)
        one = states_size(folder)
        budget = int(2.5 * one)                       # room for two states
        ask("b", budget)
        ask("c", budget)                              # three would not fit: the oldest, a, goes
        assert sorted(p.stem for p in folder.iterdir()) == ["b", "c"]
        engine.reset_cache()
        reply = engine.complete_ids(prompts["b"] + [5, 6, 7], GREEDY, state_file=folder / "b.kvstate",
                                    state_budget=budget)  # b is used again (read back and extended)...
        assert reply.stats.restored_tokens > 0 and engine.flush_states(timeout=60)
        ask("d", budget)                              # ...so c is now the least recently used
        assert sorted(p.stem for p in folder.iterdir()) == ["b", "d"]
        assert states_size(folder) <= budget
    finally:
        engine.close()


# -- a save killed half-way --------------------------------------------------------------------------

_SAVER = r"""
import sys, numpy as np
from engine.generation.prompt_cache import PromptStateFile, StateLayout
layout = StateLayout(32, 8, 128, "float16")        # LLaMA3-8b's shape: 128 KiB a token
state = PromptStateFile(sys.argv[1], "test-identity", layout)
first = list(range(1, 201))
rows = lambda a, b: (np.full(layout.rows_shape(b - a), 0.5, np.float16), np.full(layout.rows_shape(b - a), 0.25, np.float16))
if sys.argv[2] == "first":
    state.save(first, rows)
    sys.exit(0)
ids = first + list(range(1000, 3000)) if sys.argv[2] == "append" else list(range(5000, 7200))
print("saving", flush=True)
state.save(ids, rows, 200 if sys.argv[2] == "append" else 0)
print("saved", flush=True)
"""


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_a_save_killed_half_way_leaves_the_previous_state(tmp_path, how):
    path = tmp_path / "state.kvstate"
    env_cmd = [sys.executable, "-c", _SAVER, str(path)]
    subprocess.run(env_cmd + ["first"], check=True, cwd=ROOT, timeout=120)
    before = path.read_bytes()
    layout = StateLayout(32, 8, 128, "float16")
    killed_mid_save = False
    for delay in (0.0, 0.02, 0.05):
        proc = subprocess.Popen(env_cmd + [how], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(delay)
        proc.kill()
        rest = proc.communicate(timeout=60)[0]
        killed_mid_save |= "saved" not in rest
        index = PromptStateFile(path, "test-identity", layout).scan()
        assert index.ids in (list(range(1, 201)), list(range(1, 201)) + list(range(1000, 3000)),
                             list(range(5000, 7200)))
        rows = list(PromptStateFile(path, "test-identity", layout).read_rows(index, 0, len(index.ids)))
        assert sum(k.shape[2] for _, k, _ in rows) == len(index.ids)       # every row there is whole
        if "saved" not in rest:
            assert index.ids == list(range(1, 201))                        # the previous state, intact
            if how == "rewrite":
                assert path.read_bytes() == before
        path.write_bytes(before)
        for leftover in tmp_path.glob("*.tmp"):
            leftover.unlink()
    assert killed_mid_save, "every save finished before the kill: the test proved nothing"
