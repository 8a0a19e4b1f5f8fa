"""Streaming text out of token ids, stop strings, and the sampling functions.

The streaming decoder is checked against each tokenizer's own ``decode`` of
the whole sequence (what the final answer must be) on real tokenizers whose
pieces split characters: LLaMA2's byte fallback for rare Chinese characters
and emoji, LLaMA3's and SmolLM2's byte-level tokens that end mid-character.
Sampling is checked against brute-force computations written here and, for
the random draws, against the known distribution with a chi-square bound
(seeded, so the outcome is fixed).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from engine.generation.sampling import Sampler, SamplingSettings, apply_repetition_penalty, logits_to_probs
from engine.text.chat_template import template_for
from engine.text.detokenizer import IncrementalDecoder, StopStringFilter
from engine.text.tokenizers import load_tokenizer, load_tokenizer_json, save_gguf_tokenizer

FFFD = "\ufffd"

# =============================================================================
# IncrementalDecoder
# =============================================================================

TEXTS = [
    "Hello 世界! 🦙 Llama says 你好，我是一个助手。",
    "龘靐齉 are rare; 😀👍🏽 and 👨‍👩‍👧 are emoji.",
    "  two leading spaces, then\nnew lines\n\n中文\t制表符 and two trailing  ",
    "🦙🦙🦙",
    "饕餮 ñøåß naïve café — “quotes” 1234567 3.14159",
    "龘 starts with a rare character and ends with one 龘",
    "The capital of France is Paris. 法国的首都是巴黎。🇫🇷",
]

# (name, how to build it, whether it is SentencePiece with its dummy-prefix space, chat template)
TOKENIZERS = {
    "llama2-sentencepiece": ("llama2_model", lambda p, tmp: load_tokenizer(p, 2), True, "llama2"),
    "llama2-fast": ("llama2_model", lambda p, tmp: load_tokenizer(p, 2, fast=True), True, "llama2"),
    "llama3-tiktoken": ("llama3_model", lambda p, tmp: load_tokenizer(p, 3), False, "llama3"),
    "trained-spm": ("spm_model", lambda p, tmp: load_tokenizer(p, 2), True, "llama2"),
    "smollm2-bpe": ("smollm2_gguf",
                    lambda p, tmp: load_tokenizer_json(save_gguf_tokenizer(p, tmp / "tokenizer.json")),
                    False, "chatml"),
}


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def stream_tok(request, tmp_path_factory):
    """(tokenizer, is_sentencepiece, chat template kind)."""
    fixture, build, is_spm, chat = TOKENIZERS[request.param]
    path = request.getfixturevalue(fixture)
    return build(path, tmp_path_factory.mktemp("tok")), is_spm, chat


def _stream(tok, ids, context=()):
    dec = IncrementalDecoder(tok, context)
    deltas = [dec.push(i) for i in ids]
    return deltas, dec.flush()


def _contexts(tok, chat: str) -> dict[str, list[int]]:
    """Prompts a decoder may be started with."""
    bos = [tok.bos_id] if tok.bos_id is not None else []
    return {
        "chat_prompt": template_for(chat, "You are helpful.").render(
            [{"role": "user", "content": "你好！Who are you? 🦙"}], tok),
        "completion": tok.encode("The capital of France is", bos=tok.bos_id is not None),
        # the last four prompt tokens start in the middle of a byte-fallback character
        "ends_with_rare_chars": tok.encode("问题：龘靐齉"),
        "bos_only": bos or tok.encode("x"),
    }


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_stream_without_context_gives_the_decoded_text(stream_tok, text):
    tok, _, _ = stream_tok
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # these texts round-trip, so this is what the user must see
    deltas, tail = _stream(tok, ids)
    assert "".join(deltas) + tail == tok.decode(ids) == text
    assert tail == ""  # nothing incomplete is left at the end
    assert not any(FFFD in d for d in deltas)
    # never late: after each token everything complete so far has been emitted
    for n in range(1, len(ids) + 1):
        so_far, full = "".join(deltas[:n]), tok.decode(ids[:n])
        if FFFD in full:
            assert full.startswith(so_far)
        else:
            assert so_far == full, n


def test_the_streams_really_split_characters(stream_tok):
    """The texts above make every tokenizer hold back half a character at least once."""
    tok, _, _ = stream_tok
    halves = 0
    for text in TEXTS:
        ids = tok.encode(text)
        deltas, _ = _stream(tok, ids)
        for n in range(1, len(ids) + 1):
            if tok.decode(ids[:n]).endswith(FFFD):
                halves += 1
                assert not "".join(deltas[:n]).endswith(FFFD)
    assert halves >= 5


@pytest.mark.parametrize("context_name", ["chat_prompt", "completion", "ends_with_rare_chars", "bos_only"])
@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_stream_after_a_prompt_gives_the_continuation(stream_tok, context_name, text):
    tok, is_spm, chat = stream_tok
    context = _contexts(tok, chat)[context_name]
    ids = tok.encode(text)  # what the model "generates"
    before, after = tok.decode(context), tok.decode(context + ids)
    assert after.startswith(before)
    expected = after[len(before):]
    # What the user sees: SentencePiece's first piece "▁Hello" carries a real space
    # once it follows a prompt ("[/INST] Hello", "France is Paris"); decoding the
    # answer alone drops it as a start-of-text marker. Byte-level BPE has no such space.
    if context_name != "bos_only" or tok.decode(context):
        assert expected == (" " + text if is_spm else text)
    deltas, tail = _stream(tok, ids, context)
    assert "".join(deltas) + tail == expected
    assert tail == ""
    assert not any(FFFD in d for d in deltas)
    for n in range(1, len(ids) + 1):
        so_far, full = "".join(deltas[:n]), tok.decode(context + ids[:n])[len(before):]
        if FFFD in full:
            assert full.startswith(so_far)
        else:
            assert so_far == full, n


def test_sentencepiece_completion_keeps_the_space_the_answer_alone_loses(llama2_model):
    tok = load_tokenizer(llama2_model, 2)
    prompt = tok.encode("The capital of France is", bos=True)
    answer = tok.encode("Paris")  # the dummy prefix makes it the piece a model generates after "is"
    assert [tok._sp.id_to_piece(i) for i in answer] == ["▁Paris"]
    assert "".join(_stream(tok, answer, prompt)[0]) == " Paris"
    assert "".join(_stream(tok, answer)[0]) == "Paris"


def test_flush_returns_an_unfinished_character_as_replacement(stream_tok):
    """Generation cut off mid-character (length limit): the stream ends like decode() does."""
    tok, _, _ = stream_tok
    ids = tok.encode("ab 龘靐")
    n = next(n for n in range(len(ids), 0, -1) if tok.decode(ids[:n]).endswith(FFFD))
    deltas, tail = _stream(tok, ids[:n])
    assert not any(FFFD in d for d in deltas)
    assert tail.endswith(FFFD)
    assert "".join(deltas) + tail == tok.decode(ids[:n])


def test_random_character_soup_streams_exactly(stream_tok):
    tok, _, _ = stream_tok
    chars = list("ab Z,\n") + list("你好中文的") + ["龘", "靐", "😀", "🦙", "é", "👨‍👩‍👧", "  "]
    rng = random.Random(20240611)
    for _ in range(150):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(1, 14)))
        ids = tok.encode(text)
        deltas, tail = _stream(tok, ids)
        assert "".join(deltas) + tail == tok.decode(ids), text
        assert not any(FFFD in d for d in deltas + [tail]), text


def test_decoder_with_stop_filter_on_real_tokens(llama3_model):
    """The generation loop's pipeline: ids -> text deltas -> stop filter."""
    tok = load_tokenizer(llama3_model, 3)
    ids = tok.encode("好的，我来回答。🦙\nUser: 下一个问题")
    dec, stop = IncrementalDecoder(tok), StopStringFilter(["\nUser:"])
    out = []
    for i in ids:
        out.append(stop.push(dec.push(i)))
        if stop.stopped:
            break
    assert stop.stopped
    assert "".join(out) == "好的，我来回答。🦙"
    assert not any(FFFD in o for o in out)


# =============================================================================
# StopStringFilter
# =============================================================================

def _push_all(stops, pieces):
    f = StopStringFilter(stops)
    outs = []
    for p in pieces:
        outs.append(f.push(p))
        if f.stopped:
            break
    return f, outs


def test_stop_string_split_across_pushes_is_caught():
    f, outs = _push_all(["User:"], ["Sure! ", "Here", " it is.\nUs", "er", ": next question"])
    assert f.stopped
    assert outs == ["Sure! ", "Here", " it is.\n", "", ""]  # "Us", "User" held, then the stop is complete
    assert "".join(outs) == "Sure! Here it is.\n"


def test_partial_match_that_is_not_a_stop_is_released():
    f, outs = _push_all(["</s>"], ["a <", "/", "b> c"])
    assert not f.stopped
    assert outs == ["a ", "", "</b> c"]
    assert f.flush() == ""


def test_flush_returns_held_text():
    f = StopStringFilter(["</s>", "\n\nUser"])
    assert f.push("the end </") == "the end "
    assert f.flush() == "</"
    assert f.push("x\n\nUs") == "x"
    assert f.flush() == "\n\nUs"
    assert not f.stopped


def test_chinese_stop_string():
    f, outs = _push_all(["用户："], ["好的。", "用", "户", "：再见"])
    assert f.stopped and outs == ["好的。", "", "", ""]


def test_earliest_stop_wins_and_text_before_it_is_emitted():
    f, outs = _push_all(["\n\n", "###"], ["a ### b\n\n c"])
    assert f.stopped and outs == ["a "]


def test_no_stop_strings_passes_everything_through():
    for stops in ([], [""]):
        f = StopStringFilter(stops)
        assert [f.push(t) for t in ("a", "<", "/s>")] == ["a", "<", "/s>"]
        assert f.flush() == "" and not f.stopped


def _longest_held(pushed: str, stops: list[str]) -> int:
    """Brute force: the longest tail of ``pushed`` that is a proper start of some stop."""
    return max([n for s in stops for n in range(1, len(s)) if pushed.endswith(s[:n])], default=0)


def test_stop_filter_against_brute_force():
    rng = random.Random(7)
    alphabet = "ab<\n用户"
    for _ in range(3000):
        stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        f = StopStringFilter(stops)
        emitted = pushed = ""
        for p in pieces:
            emitted += f.push(p)
            pushed += p
            if f.stopped:
                break
            # held back: exactly the tail that could still become a stop string
            assert pushed.startswith(emitted)
            assert len(pushed) - len(emitted) == _longest_held(pushed, stops), (stops, pieces)
        if hits:
            assert f.stopped and emitted == text[:min(hits)], (stops, pieces)
        else:
            assert not f.stopped and emitted + f.flush() == text, (stops, pieces)


# =============================================================================
# sampling
# =============================================================================

def test_repetition_penalty_semantics():
    logits = np.array([2.0, -2.0, 0.5, -0.5, 0.0, 3.0], dtype=np.float32)
    original = logits.copy()
    out = apply_repetition_penalty(logits, [0, 1, 4, 1, 0], 2.0)  # repeats count once
    np.testing.assert_array_equal(out, [1.0, -4.0, 0.5, -0.5, 0.0, 3.0])
    np.testing.assert_array_equal(logits, original)  # the caller's array is untouched
    np.testing.assert_array_equal(apply_repetition_penalty(logits, [0, 1], 1.0), original)
    np.testing.assert_array_equal(apply_repetition_penalty(logits, [], 1.3), original)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.normal(size=100) * 3
        seen = rng.choice(100, size=20).tolist()
        p = float(rng.uniform(1.0, 2.0))
        expected = [(v / p if v > 0 else v * p) if i in seen else v for i, v in enumerate(x)]
        np.testing.assert_allclose(apply_repetition_penalty(x, seen, p), expected, rtol=0, atol=0)


def _softmax(x) -> list[float]:
    """Plain-Python softmax, as a reference."""
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]


def test_top_k_keeps_exactly_k_tokens():
    rng = np.random.default_rng(1)
    for k in (1, 2, 5, 40, 99, 100):
        for temperature in (0.3, 1.0, 1.7):
            logits = rng.permutation(100).astype(np.float64) * 0.07 + rng.normal(size=100) * 0.01
            probs = logits_to_probs(logits, temperature, k, 1.0)
            top = sorted(range(100), key=lambda i: -logits[i])[:k]
            assert set(np.flatnonzero(probs)) == set(top)
            expected = _softmax([logits[i] / temperature for i in top])
            np.testing.assert_allclose(probs[top], expected, rtol=1e-12)
    # top_k 0 or >= vocabulary: no cut
    logits = rng.normal(size=10)
    np.testing.assert_allclose(logits_to_probs(logits, 1.0, 0, 1.0), _softmax(list(logits)), rtol=1e-12)
    np.testing.assert_allclose(logits_to_probs(logits, 1.0, 10, 1.0), _softmax(list(logits)), rtol=1e-12)


def _brute_force_top_p(probs: list[float], p: float) -> set[int]:
    """The smallest set of most likely tokens whose mass reaches p."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for i in order:
        kept.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return kept


def test_top_p_keeps_the_smallest_set_reaching_p():
    rng = np.random.default_rng(2)
    checked = 0
    for trial in range(400):
        logits = rng.normal(size=int(rng.integers(2, 60))) * float(rng.uniform(0.5, 4))
        temperature = float(rng.choice([0.5, 1.0, 1.5]))
        top_p = float(rng.uniform(0.05, 0.999))
        top_k = int(rng.choice([0, 5, 20]))
        # reference, in the documented order: temperature, top-k, renormalise, top-p
        scaled = [v / temperature for v in logits]
        allowed = sorted(range(len(scaled)), key=lambda i: -scaled[i])
        if 0 < top_k < len(scaled):
            allowed = allowed[:top_k]
        sub = _softmax([scaled[i] for i in allowed])
        cum = np.cumsum(sorted(sub, reverse=True))
        if np.min(np.abs(cum - top_p)) < 1e-9:
            continue  # a float tie with the threshold: either answer is right
        kept = {allowed[j] for j in _brute_force_top_p(sub, top_p)}
        probs = logits_to_probs(logits, temperature, top_k, top_p)
        assert set(np.flatnonzero(probs)) == kept, trial
        mass = sum(sub[j] for j in _brute_force_top_p(sub, top_p))
        np.testing.assert_allclose(probs[sorted(kept)],
                                   [sub[allowed.index(i)] / mass for i in sorted(kept)], rtol=1e-9)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        checked += 1
    assert checked > 350


def test_top_p_exact_example():
    probs = np.array([0.1, 0.4, 0.2, 0.3])
    logits = np.log(probs)
    assert set(np.flatnonzero(logits_to_probs(logits, 1.0, 0, 0.35))) == {1}
    assert set(np.flatnonzero(logits_to_probs(logits, 1.0, 0, 0.45))) == {1, 3}
    assert set(np.flatnonzero(logits_to_probs(logits, 1.0, 0, 0.8))) == {1, 3, 2}
    assert set(np.flatnonzero(logits_to_probs(logits, 1.0, 0, 0.95))) == {0, 1, 2, 3}
    np.testing.assert_allclose(logits_to_probs(logits, 1.0, 0, 0.45), [0, 4 / 7, 0, 3 / 7], rtol=1e-12)
    # mass exactly equal to p reaches it (four equal logits: probabilities 0.25, exact in binary)
    flat = np.zeros(4)
    for top_p, n in ((0.25, 1), (0.5, 2), (0.75, 3), (0.5000001, 3)):
        assert np.count_nonzero(logits_to_probs(flat, 1.0, 0, top_p)) == n, top_p


def test_low_temperature_approaches_argmax():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=50)
    best = int(np.argmax(logits))
    tops = [logits_to_probs(logits, t, 0, 1.0)[best] for t in (2.0, 1.0, 0.5, 0.1, 0.01)]
    assert tops == sorted(tops) and tops[0] < 0.5
    assert tops[-1] > 0.999
    one_hot = logits_to_probs(logits, 0.0, 0, 1.0)
    assert int(np.argmax(one_hot)) == best and one_hot[best] == pytest.approx(1.0)


def test_sampler_same_seed_same_sequence():
    rng = np.random.default_rng(4)
    steps = [rng.normal(size=500) for _ in range(200)]
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.1, seed=1234)

    def run(s):
        sampler, seen = Sampler(s), []
        for logits in steps:
            seen.append(sampler(logits))
            sampler.remember(seen[-1:])
        return seen

    first = run(settings)
    assert run(settings) == first
    assert run(SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.1, seed=4321)) != first
    assert len(set(first)) > 50  # it really sampled, not argmax


def test_greedy_is_argmax():
    rng = np.random.default_rng(5)
    for _ in range(100):
        logits = rng.normal(size=300)
        for s in (SamplingSettings(greedy=True, repetition_penalty=1.0, seed=1),
                  SamplingSettings(greedy=False, temperature=0.0, repetition_penalty=1.0, seed=1)):
            assert Sampler(s)(logits) == int(np.argmax(logits))
    # repetition penalty applies before the argmax, as in HF
    logits = np.array([2.0, 1.9, -1.0])
    for penalty, want in ((1.1, 1), (1.0, 0)):
        sampler = Sampler(SamplingSettings(greedy=True, repetition_penalty=penalty))
        sampler.remember([0])
        assert sampler(logits) == want


# chi-square 99.9% quantiles (df -> value), from standard tables
CHI2_999 = {2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515}


def _chi_square(counts: np.ndarray, expected_probs: np.ndarray, n: int) -> float:
    expected = expected_probs * n
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_draws_follow_the_distribution(seed):
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = np.log(p) + 3.0  # any constant shift
    n = 20000
    sampler = Sampler(SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=seed))
    counts = np.bincount([sampler(logits) for _ in range(n)], minlength=5)
    assert _chi_square(counts, p, n) < CHI2_999[4]
    np.testing.assert_allclose(counts / n, p, atol=0.015)


def test_draws_follow_temperature_top_k_and_top_p():
    p = np.array([0.05, 0.4, 0.25, 0.15, 0.1, 0.05])
    logits = np.log(p)
    n = 20000
    # temperature 0.5 squares the probabilities; top_k 4 keeps ids 1, 2, 3, 4
    s = SamplingSettings(temperature=0.5, top_k=4, top_p=1.0, repetition_penalty=1.0, seed=11)
    sampler = Sampler(s)
    counts = np.bincount([sampler(logits) for _ in range(n)], minlength=6)
    assert counts[0] == counts[5] == 0
    q = p[1:5] ** 2 / (p[1:5] ** 2).sum()
    assert _chi_square(counts[1:5], q, n) < CHI2_999[3]
    # top_p 0.7 at temperature 1: 0.4 + 0.25 < 0.7 <= 0.4 + 0.25 + 0.15, so ids 1, 2, 3
    sampler = Sampler(SamplingSettings(temperature=1.0, top_k=0, top_p=0.7, repetition_penalty=1.0, seed=12))
    counts = np.bincount([sampler(logits) for _ in range(n)], minlength=6)
    assert counts[0] == counts[4] == counts[5] == 0
    assert _chi_square(counts[1:4], p[1:4] / p[1:4].sum(), n) < CHI2_999[2]


def test_prompt_ending_inside_a_character_streams_the_whole_character(llama3_model):
    """Raw --prompt-ids may stop mid-character; the answer that completes it shows the character."""
    tok = load_tokenizer(llama3_model, 3)
    ids = tok.encode("ab 龘 ok")
    cut = next(n for n in range(1, len(ids)) if tok.decode(ids[:n]).endswith(FFFD))
    deltas, tail = _stream(tok, ids[cut:], ids[:cut])
    assert "".join(deltas) + tail == tok.decode(ids)[len(tok.decode(ids[:cut - 1])):]
    assert "龘" in "".join(deltas)
