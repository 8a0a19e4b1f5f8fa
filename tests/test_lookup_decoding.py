"""Lookup decoding (issue 17): guesses checked in one batched step never change an answer.

Greedy answers are compared with the independent numpy forward pass on the MHA
and GQA test checkpoints, with guesses right and wrong at known places (the
random test models never repeat themselves, so their guesses come from the
reference's own answer, spoiled every few tokens); the built-in model's real
n-gram guesses on a quoting task are compared with its answer without lookup,
greedy and sampled with a seed, and under every stop rule. The batch-invariance
property it all rests on is checked directly: a token's logits do not depend on
how many tokens share its step or where it sits among them.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

import reference_llama as ref
from fixtures import greedy_ids, make_executor

from engine.generation.kv_cache import KVCacheState
from engine.generation.lookup import LookupDrafter, NgramIndex, StepCost
from engine.generation.loop import generate
from engine.generation.sampling import SamplingSettings

GREEDY = SamplingSettings(greedy=True, repetition_penalty=1.0)


class SpoiltAnswerIndex(NgramIndex):
    """Guesses the known answer, with every ``every``-th answer token guessed wrong (by one id)."""

    def __init__(self, answer: list[int], prompt_length: int, every: int = 5):
        super().__init__()
        self.answer, self.prompt_length, self.every = answer, prompt_length, every

    def guess(self, limit: int) -> list[int]:
        at = len(self.tokens) - self.prompt_length
        return [t + 1 if (at + j) % self.every == self.every - 1 else t
                for j, t in enumerate(self.answer[at:at + limit])]


def _plain_greedy(model: str, ex, weights, spec, prompt: list[int], n: int) -> list[int]:
    """The answer without lookup: the numpy reference's; for the GQA model (a 2.1M-id vocabulary makes the
    reference slow) the executor's own one-token decoding, which test_cpu_executor checks against it."""
    if model == "llama2_tiny":
        return ref.greedy(weights, spec.hp, prompt, n)
    return greedy_ids(ex, prompt, n)


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
@pytest.mark.parametrize("kind", ["repeating", "ordinary"])
def test_greedy_answers_with_right_and_wrong_guesses_are_plain_greedy_answers(model, kind, request):
    ckpt, yml, weights, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, kv_cache="float32")
    words = [int(t) for t in np.random.default_rng(21).integers(3, 1000, 11)]
    prompt = [spec.bos] + (words + [5] + words if kind == "repeating" else words)
    want = _plain_greedy(model, ex, weights, spec, prompt, 14)
    for stop_ids, answer in (((), want), ([want[7]], want[:7])):   # the length limit; a stop id amid guesses
        assert want[7] not in want[:7]
        cache, plain_cache = KVCacheState(), KVCacheState()
        # wide steps cost little (as on a big model): long runs of guesses, the stop id inside one
        drafter = LookupDrafter("on", StepCost(prior_slope=0.01), index=SpoiltAnswerIndex(want, len(prompt)))
        done = generate(ex, prompt, max_new_tokens=14, sampling=GREEDY, cache=cache, lookup=drafter,
                        stop_ids=stop_ids)
        assert done.output_ids == answer
        stats = done.stats
        assert 0 < stats.accepted_tokens < stats.drafted_tokens       # guesses kept and guesses thrown away
        assert stats.decode_calls < len(answer) - 1                    # fewer steps than tokens
        plain = generate(ex, prompt, max_new_tokens=14, sampling=GREEDY, cache=plain_cache, stop_ids=stop_ids)
        assert plain.output_ids == answer and stats.decode_tokens == plain.stats.decode_calls
        # the cache claims what plain decoding's does: rows of wrong guesses are written but never trusted
        assert cache.ids == plain_cache.ids == prompt + want[:len(plain_cache.ids) - len(prompt)]
    more, reusable = prompt + want + [7, 9], len(cache.ids)
    ex.prefill(prompt, 0)                    # the rows the stopped answer left (plain decoding overwrote them)
    for pos, token in enumerate(want[:reusable - len(prompt)], len(prompt)):
        ex.decode_batch([token, token + 1, token + 2], pos)   # each time, wrong rows after the right one
    follow = generate(ex, more, max_new_tokens=3, sampling=GREEDY, cache=cache)
    assert follow.stats.cached_tokens == reusable
    assert follow.output_ids == _plain_greedy(model, ex, weights, spec, more, 3)
    ex.close()


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
def test_lookup_up_to_the_end_of_the_context(model, request):
    """The n-gram guesses themselves (a random model seldom repeats, so they are few), up to the context's end."""
    ckpt, yml, weights, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, kv_cache="float32", max_seq_len=40)
    words = [int(t) for t in np.random.default_rng(4).integers(3, 1000, 8)]
    prompt = [spec.bos] + words + [5] + words + [5] + words[:2]
    done = generate(ex, prompt, max_new_tokens=40, sampling=GREEDY, lookup=LookupDrafter("on"))
    assert done.stats.finish_reason == "context"
    if model == "llama2_tiny":
        assert done.output_ids == ref.greedy(weights, spec.hp, prompt, len(done.output_ids))
    else:
        assert done.output_ids == generate(ex, prompt, max_new_tokens=40, sampling=GREEDY).output_ids
    ex.close()


@pytest.mark.parametrize("model", ["llama2_tiny", "llama3_chunked"])
@pytest.mark.parametrize("fmt", ["stored", "int8", "int4"])
def test_a_tokens_logits_do_not_depend_on_its_batch(model, fmt, request):
    """Batch invariance: the same token at the same place, alone or in a step of 2..16 at any row, gives
    bit-identical logits (every tile width of the kernels, and their leftovers, take part)."""
    ckpt, yml, _, spec = request.getfixturevalue(model)
    ex = make_executor("cpu", ckpt, yml, weight_format=fmt)
    seq = [spec.bos] + [int(t) for t in np.random.default_rng(9).integers(3, 1000, 40)]
    base, target = 8, 24                     # rows before ``base`` come from one prefill; the token sits at 24

    def logits_in_step(width: int, row: int) -> np.ndarray:
        ex.prefill(seq[:base], 0)
        start = target - row
        for pos in range(base, start):       # the positions before the step, one token at a time
            ex.decode(seq[pos], pos)
        return ex.decode_batch(seq[start:start + width], start)[row]

    alone = logits_in_step(1, 0)
    # the tiles are 1, 3 or 4, 6 or 8 tokens wide: each with leftovers (fewer for the 2.1M-id vocabulary: slow)
    widths = (2, 3, 4, 7, 8, 9, 16) if model == "llama2_tiny" else (3, 9, 16)
    for width in widths:
        for row in sorted({0, width // 2, width - 1}):
            assert np.array_equal(logits_in_step(width, row), alone), (width, row)
    ex.close()


def test_guesses_come_from_the_latest_longest_match():
    index = NgramIndex([7, 2, 3, 4, 8, 2, 3, 5, 6, 2, 3])
    assert index.guess(3) == [5, 6, 2]       # "2 3" last went on with 5 ("6 2 3" is new)
    assert index.guess(0) == [] and NgramIndex([1, 2]).guess(4) == []
    index.extend([9, 7, 2, 3])
    assert index.guess(2) == [4, 8]          # "7 2 3" was seen: the longer match wins over "2 3" -> 9


def test_auto_drafts_only_what_pays_for_the_wider_step():
    cost = StepCost()
    for _ in range(3):
        cost.record(1, 0.010)
    cost.record(9, 0.090)                    # a step of 9 costs 9 single ones: guesses never pay
    auto = LookupDrafter("auto", cost)
    auto.hits, auto.misses = 99.0, 1.0
    assert auto.width(8) == 0 and LookupDrafter("on", cost).width(8) >= 1
    sent = [auto.width(8) for _ in range(40)]  # ... but it tries now and then: the cost was timed once
    assert sent.count(0) >= 36 and max(sent) == 8
    for _ in range(5):
        cost.record(1, 0.030)                # busy for a while: one-token steps take 0.030 s
        cost.record(9, 0.036)                # a step of 9 now costs 1.2 of them
    assert cost.ratio(9) == pytest.approx(1.2) and auto.width(8) == 8
    cost.record(9, 0.003)                    # one odd timing does not move it
    assert cost.ratio(9) == pytest.approx(1.2)
    auto.hits, auto.misses = 1.0, 20.0       # guesses mostly wrong: not worth a wider step
    assert auto.width(8) == 0
    auto.check([5, 6, 7], sent=0, chosen=[5, 6, 7, 8])   # guesses made while drafting was off still count
    assert auto.acceptance > 1.0 / 21.0 * 1.1


def test_auto_trusts_each_match_length_by_its_own_record():
    """Guesses from long matches (a copied line) and from short ones (", the") come true at very different rates:
    auto drafts from each by its own, so chat's short matches stop costing wide steps while copying goes on."""
    cost = StepCost()
    for _ in range(3):
        cost.record(1, 0.010)
    cost.record(4, 0.016)                      # a step of 4 costs 1.6 one-token steps
    four = [10, 11, 12, 13, 14, 10, 11, 12, 13]  # ends with a 4-token match: "10 11 12 13" went on with 14
    auto = LookupDrafter("auto", cost, NgramIndex(four))
    for _ in range(8):
        sent, guess = auto.draft(3)
        assert guess == [14, 10, 11]
        auto.check(guess, len(sent), guess + [0])          # they come true
    auto.index = NgramIndex([10, 11, 12, 30, 11, 12])      # only "11 12" matches now
    for _ in range(8):
        sent, guess = auto.draft(3)
        assert guess == [30, 11, 12]
        auto.check(guess, len(sent), [99])                 # they do not
    assert auto.acceptance_of(4) > 0.8 and auto.acceptance_of(2) < 0.3 < auto.acceptance
    assert auto.draft(3)[0] == []                          # a short match: not worth the wider step
    auto.index = NgramIndex(four)
    assert auto.draft(3)[0] == [14, 10, 11]                # a long one still is


# -- the built-in model: real guesses, stop rules, sampling -------------------------------------------

QUOTE = ("Quote the following paragraph exactly, then summarize it in one sentence.\n\n"
         "The Great Wall of China is a series of fortifications that were built across the historical northern "
         "borders of ancient Chinese states and Imperial China as protection against various nomadic groups from "
         "the Eurasian Steppe.")
CHAT = "Tell me about the history of tea in two sentences."


@pytest.fixture(scope="module")
def builtin():
    from engine import ExecutorOptions, ModelSource, load_engine
    from assets import require_asset

    require_asset("smollm2-gguf")
    engine = load_engine(ModelSource(builtin=True), ExecutorOptions(backend="cpu", max_seq_len=512))
    yield engine
    engine.close()


def _answer(engine, content: str, settings, cancel_after: int | None = None):
    """(completion, the streamed (id, text) pairs); ``cancel_after``: Stop pressed while that token streams."""
    stream, cancel = [], threading.Event()

    def on_token(token: int, text: str) -> None:
        stream.append((token, text))
        if cancel_after is not None and len(stream) == cancel_after:
            cancel.set()
    engine.reset_cache()
    done = engine.chat([{"role": "user", "content": content}], settings, on_token=on_token, cancel=cancel)
    return done, stream


def _same(a, b) -> None:
    (x, xs), (y, ys) = a, b
    assert (x.output_ids, x.text, x.stats.finish_reason, xs) == (y.output_ids, y.text, y.stats.finish_reason, ys)


@pytest.mark.parametrize("content", [QUOTE, CHAT], ids=["quote", "chat"])
def test_builtin_model_greedy_answers_are_the_same_with_lookup(builtin, content):
    from engine import GenerationSettings

    plain = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=60, lookup="off")
    off = _answer(builtin, content, plain)
    for mode in ("on", "auto"):
        on = _answer(builtin, content, replace(plain, lookup=mode))
        _same(on, off)
    if content == QUOTE:
        stats = _answer(builtin, content, replace(plain, lookup="on"))[0].stats
        assert stats.accepted_tokens >= 10 and stats.decode_calls < stats.decode_tokens


def test_builtin_model_stop_rules_and_cancelling_behave_as_without_lookup(builtin):
    from engine import GenerationSettings

    plain = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=60, lookup="off")
    full = _answer(builtin, QUOTE, plain)[0]
    words = full.text.split()
    middle = full.output_ids[len(full.output_ids) // 2]
    cases = [dict(max_new_tokens=n) for n in (1, 2, 7, 13)] + [dict(stop_strings=(words[6],)),
                                                               dict(stop_strings=(" ".join(words[10:12]),))]
    for case in cases:
        settings = replace(plain, **case)
        _same(_answer(builtin, QUOTE, replace(settings, lookup="on")), _answer(builtin, QUOTE, settings))
    for n in (1, 5, 9):
        _same(_answer(builtin, QUOTE, replace(plain, lookup="on"), cancel_after=n),
              _answer(builtin, QUOTE, plain, cancel_after=n))
    # a stop id in the middle of the answer: the raw continuation, where the template's own stop ids do not apply
    ids = builtin.text_ids(QUOTE)
    lookup = builtin.complete_ids(ids, replace(plain, lookup="on"), stop_ids=[middle])
    assert lookup.output_ids == builtin.complete_ids(ids, plain, stop_ids=[middle]).output_ids
    assert lookup.stats.finish_reason in ("stop", "length")


def test_builtin_model_sampled_answers_are_the_same_with_lookup(builtin):
    """With a seed, the same tokens: a guess is kept when the sampler draws it (the standard rule for a fixed draft),
    which uses the random generator as plain decoding does."""
    from engine import GenerationSettings

    for seed in (1, 2, 3):
        sampled = GenerationSettings(temperature=0.7, top_k=40, top_p=0.95, seed=seed, max_new_tokens=40,
                                     lookup="off")
        off = _answer(builtin, QUOTE, sampled)
        on = _answer(builtin, QUOTE, replace(sampled, lookup="on"))
        _same(on, off)
        if seed == 1:
            assert on[0].stats.accepted_tokens > 0


def test_run_model_lookup_flag(builtin):
    """``run_model.py --lookup on``: the answer of plain decoding, and the guesses it kept on its stats line."""
    import json

    from engine import GenerationSettings
    from fixtures import run_cli

    done = run_cli("run_model.py", "--builtin", "--prompt", QUOTE, "--greedy", "--max-new-tokens", "40",
                   "--max-seq-len", "512", "--lookup", "on", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    plain = _answer(builtin, QUOTE, GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=40,
                                                       lookup="off"))[0]
    assert out["output_ids"] == plain.output_ids
    assert 0 < out["stats"]["accepted_tokens"] <= out["stats"]["drafted_tokens"]
    bad = run_cli("run_model.py", "--builtin", "--prompt", "hi", "--lookup", "sometimes")
    assert bad.returncode == 2 and "--lookup" in bad.stderr and "Traceback" not in bad.stderr
