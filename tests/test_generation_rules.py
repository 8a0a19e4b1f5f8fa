"""The generation loop's rules on a real model: zero-length answers, padded vocabularies, what the
decode rate counts, the repetition penalty's window and exemptions, LLaMA2 answers quoting [INST],
and executors that cannot reuse a cached prefix.

Expected tokens come from the numpy reference (tests/reference_llama.py); executors are the real
ones, on both the default cpu backend and MindSpore, wrapped (never replaced) where a test needs to see
what the loop asks of it.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from engine import ChatEngine, GenerationSettings
from engine.generation.loop import generate
from engine.generation.sampling import Sampler, SamplingSettings
from engine.text.chat_template import template_for
from engine.text.tokenizers import load_tokenizer
from fixtures import chat_engine, compile_cache_env, make_executor, on_each_backend, run_cli

GREEDY = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=8)
EOS = 2


class RecordingExecutor:
    """Delegates to a real executor and records what the generation loop asks of it."""

    supports_kv_rows = False   # only what is asked of it here: no state files, no shifts

    def __init__(self, inner, supports_prefix_reuse: bool = True):
        self.inner = inner
        self.supports_prefix_reuse = supports_prefix_reuse
        self.config = inner.config
        self.max_seq_len = inner.max_seq_len
        self.prefills: list[tuple[int, int]] = []   # (number of ids, start position)
        self.decodes: list[int] = []                # positions
        self.resets = 0

    def prefill(self, ids, start_pos, cancel=None, progress=None):
        self.prefills.append((len(ids), start_pos))
        return self.inner.prefill(ids, start_pos, cancel=cancel, progress=progress)

    def decode(self, token, pos):
        self.decodes.append(pos)
        return self.inner.decode(token, pos)

    def reset(self):
        self.resets += 1
        self.inner.reset()


@pytest.fixture(scope="module", params=["mindspore", "cpu"])
def llama2_engine(request, llama2_engine):
    """The shared LLaMA2-shaped engine, on each backend in turn."""
    return on_each_backend(request, llama2_engine)


@pytest.fixture
def borrowed_executor(llama2_engine):
    """The shared engine's executor, driven directly by a test; the engine forgets its cache afterwards."""
    yield llama2_engine.executor
    llama2_engine.reset_cache()


def reference_answer(weights, spec, prompt, n):
    """The greedy answer with the 1000-piece tokenizer: only ids it can decode, ending before EOS."""
    return ref.answer(weights, spec.hp, prompt, n, stop={EOS}, limit=1000)


# -- max_new_tokens=0 -------------------------------------------------------

def test_zero_new_tokens_gives_no_token(llama2_engine):
    settings = GenerationSettings(max_new_tokens=0, greedy=True)
    seen = []
    raw = llama2_engine.complete_ids([1, 15, 300], settings, on_token=lambda t, s: seen.append(t))
    chat = llama2_engine.chat([{"role": "user", "content": "hello"}], settings, on_token=lambda t, s: seen.append(t))
    for done in (raw, chat):
        assert done.output_ids == [] and done.text == "" and seen == []
        assert done.stats.finish_reason == "length" and done.stats.generated_tokens == 0


@pytest.mark.parametrize("backend", ["mindspore", "cpu"])
def test_cli_zero_new_tokens_gives_no_token(llama2_tiny, cli_compile_cache, backend):
    ckpt, yml, _, _ = llama2_tiny
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--backend", backend, "--prompt-ids",
                     "1,15,300", "--max-new-tokens", "0", "--json", env_extra=compile_cache_env(cli_compile_cache, yml))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["output_ids"] == [] and out["text"] == ""
    assert out["stats"]["finish_reason"] == "length" and out["stats"]["generated_tokens"] == 0


# -- a model vocabulary padded past the tokenizer's --------------------------

def test_prompt_id_past_the_tokenizer_but_inside_the_model_vocabulary(llama2_engine, llama2_tiny):
    """llama2_tiny has 32000 ids, the tokenizer 1000: id 1100 is a valid prompt id nothing can decode."""
    _, _, weights, spec = llama2_tiny
    tokenizer = llama2_engine.tokenizer
    assert tokenizer.vocab_size_with_added == 1000 < spec.vocab
    prompt = [1, 1100, 15, 1100, 300]
    penalty = 1.3
    greedy = llama2_engine.complete_ids(prompt, GenerationSettings(greedy=True, repetition_penalty=penalty,
                                                                   max_new_tokens=6))
    # the penalty on the reference's logits, restricted to what the tokenizer can decode
    ids, want = list(prompt), []
    for _ in range(6):
        logits = ref.forward(weights, spec.hp, ids)[-1][:1000].astype(np.float64)
        for i in {i for i in ids if 2 < i < 1000}:  # 0-2 are unk/bos/eos: control tokens
            logits[i] = logits[i] / penalty if logits[i] > 0 else logits[i] * penalty
        token = int(np.argmax(logits))
        if token == EOS:
            break
        want.append(token)
        ids.append(token)
    assert greedy.output_ids == want
    sampled = llama2_engine.complete_ids(prompt, GenerationSettings(temperature=0.9, repetition_penalty=penalty,
                                                                    seed=11, max_new_tokens=6))
    for done in (greedy, sampled):
        assert all(0 <= t < 1000 for t in done.output_ids)
        assert done.text.lstrip(" ") == tokenizer.decode(done.output_ids)  # alone, SentencePiece drops the space


# -- what decode_tokens_per_s counts ----------------------------------------

def test_decode_rate_counts_exactly_the_one_token_passes(llama2_tiny, borrowed_executor):
    _, _, weights, spec = llama2_tiny
    prompt = [1, 15, 300, 7]
    sampling = SamplingSettings(greedy=True, repetition_penalty=1.0)
    want = ref.greedy(weights, spec.hp, prompt, 6)
    k = 4  # the answer ends on a stop token, the 4th token chosen
    assert want[k - 1] not in want[:k - 1]
    ex = RecordingExecutor(borrowed_executor)
    done = generate(ex, prompt, max_new_tokens=50, sampling=sampling, stop_ids=[want[k - 1]])
    assert done.output_ids == want[:k - 1] and done.stats.finish_reason == "stop"
    assert done.stats.decode_calls == len(ex.decodes) == k - 1
    assert ex.decodes == [len(prompt) + i for i in range(k - 1)]
    assert done.stats.decode_tokens_per_s == pytest.approx(done.stats.decode_calls / done.stats.decode_s)

    ex = RecordingExecutor(borrowed_executor)  # n tokens cut by the length limit: n - 1 passes
    done = generate(ex, prompt, max_new_tokens=3, sampling=sampling)
    assert done.output_ids == want[:3] and done.stats.finish_reason == "length"
    assert done.stats.decode_calls == len(ex.decodes) == 2

    ex = RecordingExecutor(borrowed_executor)  # one token comes from the prefill alone: no rate at all
    done = generate(ex, prompt, max_new_tokens=1, sampling=sampling)
    assert ex.decodes == [] and done.stats.decode_calls == 0 and done.stats.decode_tokens_per_s == 0.0
    assert done.stats.as_dict()["decode_calls"] == 0


# -- the repetition penalty --------------------------------------------------

def test_repetition_penalty_looks_at_the_last_64_tokens_only():
    settings = SamplingSettings(greedy=True, repetition_penalty=2.0)
    assert settings.repetition_window == 64
    logits = np.zeros(300)
    logits[5], logits[6] = 2.0, 1.5  # penalised, token 5 falls to 1.0, below token 6
    filler = list(range(100, 164))   # 64 other tokens, at logit 0 (unchanged by any penalty)

    def choose(history, **kw):
        sampler = Sampler(replace(settings, **kw))
        for token in history:  # one at a time, as the generation loop remembers them
            sampler.remember([token])
        return sampler(logits)

    assert choose([5] + filler[:63]) == 6   # 5 is the 64th most recent token: penalised
    assert choose([5] + filler) == 5        # the 65th: outside the window
    assert choose([5] + filler, repetition_window=65) == 6
    assert choose([5], repetition_window=0) == 5
    sampler = Sampler(settings)
    sampler.remember([5] + filler)          # a whole prompt at once obeys the same window
    assert sampler(logits) == 5


def test_repetition_penalty_never_touches_control_tokens():
    logits = np.zeros(300)
    logits[EOS], logits[6] = 2.0, 1.5
    history = [1, 40, EOS, 1, 41, EOS]
    plain = Sampler(SamplingSettings(greedy=True, repetition_penalty=2.0))
    plain.remember(history)
    assert plain(logits) == 6  # without the exemption, the end of turn would lose
    exempt = Sampler(SamplingSettings(greedy=True, repetition_penalty=2.0), control_ids=frozenset({0, 1, EOS}))
    exempt.remember(history)
    assert exempt(logits) == EOS


CONVERSATION = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "the weather today"}]
RUNNER_UP = 700  # a word that is not in CONVERSATION


@pytest.fixture(scope="module", params=["mindspore", "cpu"])
def eager_to_stop(request, tmp_path_factory, spm_model):
    """(engine, prompt ids, reference logits) of a LLaMA2 model set up so that after CONVERSATION the end of
    turn is the most likely token and RUNNER_UP is close behind: within the 1.3 penalty of it."""
    spec = mf.TinySpec("eos_after_conversation", dim=64, layers=1, heads=4, kv_heads=4, vocab=1000, ffn=128,
                       theta=1e4, dtype="float16")
    weights = mf.make_weights(spec, seed=3)
    prompt = template_for("llama2").render(CONVERSATION, load_tokenizer(spm_model, 2))
    assert prompt.count(EOS) == 1 and RUNNER_UP not in prompt
    # the final hidden state: the reference with an identity lm_head
    hidden = ref.forward({**weights, "lm_head.weight": np.eye(spec.dim, dtype=np.float32)}, spec.hp, prompt)[-1]
    top = float((weights["lm_head.weight"] @ hidden).max()) + 4.0
    unit = hidden / float(hidden @ hidden)
    weights["lm_head.weight"][RUNNER_UP] = (top * unit).astype(np.float16)
    weights["lm_head.weight"][EOS] = (1.15 * top * unit).astype(np.float16)
    logits = ref.forward(weights, spec.hp, prompt)[-1]
    order = np.argsort(-logits)
    assert list(order[:2]) == [EOS, RUNNER_UP] and logits[EOS] / 1.3 < logits[RUNNER_UP] > 0
    folder = tmp_path_factory.mktemp("eos_model")
    mf.write_ckpt(spec, weights, folder / "model.ckpt")
    yml = mf.write_yaml(spec, folder / "model.yaml")
    engine = chat_engine(make_executor(request.param, folder / "model.ckpt", yml), load_tokenizer(spm_model, 2),
                         template_for("llama2"))
    yield engine, prompt, logits
    engine.close()


def test_end_of_turn_tokens_of_earlier_turns_are_not_penalised(eager_to_stop):
    engine, prompt, logits = eager_to_stop
    done = engine.chat(CONVERSATION, GenerationSettings(greedy=True, repetition_penalty=1.3, max_new_tokens=4))
    assert done.prompt_ids == prompt
    assert done.stats.finish_reason == "stop" and done.output_ids == []
    # the case is a real one: penalising every token seen would have made RUNNER_UP win over the end of turn
    everything = Sampler(SamplingSettings(greedy=True, repetition_penalty=1.3))
    everything.remember(prompt)
    assert everything(logits) == RUNNER_UP


# -- LLaMA2 answers that quote the prompt markers -----------------------------

def test_llama2_chat_continues_after_an_answer_that_quoted_inst(llama2_engine, llama2_tiny):
    _, _, weights, spec = llama2_tiny
    conversation = [{"role": "user", "content": "How do I write a prompt?"},
                    {"role": "assistant", "content": "Like this: [INST] your question [/INST] <<SYS>>"},
                    {"role": "user", "content": "Thanks, and then?"}]
    done = llama2_engine.chat(conversation, GREEDY)
    prompt = llama2_engine.prepare_chat(conversation, GREEDY.max_new_tokens)
    assert done.prompt_ids == prompt.ids and prompt.dropped == 0
    assert done.output_ids == reference_answer(weights, spec, prompt.ids, GREEDY.max_new_tokens)
    assert done.stats.finish_reason in ("length", "stop")


# -- executors that cannot reuse a cached prefix ------------------------------

def test_executor_without_prefix_reuse_gets_the_whole_prompt_every_turn(llama2_engine, llama2_tiny,
                                                                        borrowed_executor):
    _, _, weights, spec = llama2_tiny
    tokenizer, template, info = llama2_engine.tokenizer, llama2_engine.template, llama2_engine.info

    def two_turns(executor):
        engine = ChatEngine(executor, tokenizer, template, info)
        first = [{"role": "user", "content": "hello"}]
        one = engine.chat(first, GREEDY)
        two = engine.chat(first + [{"role": "assistant", "content": one.text},
                                   {"role": "user", "content": "and 你好?"}], GREEDY)
        return one, two

    no_reuse = RecordingExecutor(borrowed_executor, supports_prefix_reuse=False)
    one, two = two_turns(no_reuse)
    assert no_reuse.prefills == [(one.stats.prompt_tokens, 0), (two.stats.prompt_tokens, 0)]
    assert no_reuse.resets == 2 and two.stats.prefilled_tokens == two.stats.prompt_tokens
    assert two.output_ids == reference_answer(weights, spec, two.prompt_ids, GREEDY.max_new_tokens)

    reuse = RecordingExecutor(borrowed_executor)
    again_one, again_two = two_turns(reuse)
    assert reuse.prefills[1][1] > 0 and reuse.resets == 0  # the capable executor skips the shared prefix
    assert (again_one.output_ids, again_two.output_ids) == (one.output_ids, two.output_ids)
