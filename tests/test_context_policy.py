"""Which turns a conversation keeps when it outgrows the context: whole old exchanges dropped, with hysteresis.

The prompts kept are checked token by token against Meta's own formats (the references in
test_chat_templates.py); the policy's promises are checked as a conversation grows turn by turn:
every prompt fits, the kept turns change only now and then (so their KV rows are reused), and each
message is encoded once however long the conversation.
"""

from __future__ import annotations

import pytest

from engine.errors import GenerationError
from engine.generation.context_policy import KEEP_AFTER_DROP, fit_to_context
from engine.text.chat_template import BaseTranscriptTemplate, Llama2ChatTemplate, Llama3ChatTemplate
from engine.text.tokenizers import load_tokenizer
from test_chat_templates import MetaChatFormat, MetaLlama2Tokenizer, MetaLlama3Tokenizer, meta_llama2_chat_tokens


def _conversation(system: bool, exchanges: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a helpful assistant. 请简洁地回答。"}] if system else []
    for i in range(exchanges):
        msgs.append({"role": "user", "content": f"Question {i}: what is {i} times {i + 1}? 第{i}个问题。"})
        msgs.append({"role": "assistant", "content": f"{i} times {i + 1} is {i * (i + 1)}. 答案是{i * (i + 1)}。"})
    msgs.append({"role": "user", "content": "And what about the last question? 最后一个。"})
    return msgs


@pytest.fixture(scope="module")
def meta_llama3(llama3_model):
    return MetaChatFormat(MetaLlama3Tokenizer(llama3_model))


@pytest.mark.parametrize("system", [True, False], ids=["system", "no_system"])
def test_an_overflow_drops_whole_old_exchanges_down_to_about_half_the_budget(llama2_model, system):
    meta = MetaLlama2Tokenizer(llama2_model)
    tok = load_tokenizer(llama2_model, 2)
    msgs = _conversation(system, exchanges=6)
    head = msgs[:1] if system else []
    body = msgs[len(head):]

    def keep_last(n_exchanges: int) -> list[dict]:
        return head + body[len(body) - 1 - 2 * n_exchanges:]
    lengths = [len(meta_llama2_chat_tokens(keep_last(n), meta)) for n in range(7)]

    kept, ids = fit_to_context(msgs, Llama2ChatTemplate(), tok, budget=lengths[6])  # it all fits: all is kept
    assert kept == msgs and ids == meta_llama2_chat_tokens(msgs, meta)
    budget = lengths[6] - 1                      # one token short: down to half, not just one exchange
    kept, ids = fit_to_context(msgs, Llama2ChatTemplate(), tok, budget=budget)
    n = max(k for k in range(7) if lengths[k] <= budget * KEEP_AFTER_DROP)
    assert n < 5 and kept == keep_last(n)
    assert ids == meta_llama2_chat_tokens(kept, meta)


def _grow(template, tok, turns: int, budget: int):
    """A conversation answered turn by turn: (first kept message index, prompt ids, answer) per turn."""
    msgs = [{"role": "system", "content": "Answer briefly."}]
    seen = []
    for t in range(turns):
        msgs.append({"role": "user", "content": f"Tell me fact number {t} about the sea, please. 第{t}个。"})
        kept, ids = fit_to_context(msgs, template, tok, budget)
        answer = f"Fact {t}: the sea covers much of the planet and holds {t * 7} kinds of fish. 好的。"
        seen.append((msgs.index(kept[1]), ids, answer))
        msgs.append({"role": "assistant", "content": answer})
    return seen


@pytest.mark.parametrize("kind", ["llama3", "llama2"])
def test_the_kept_turns_stay_the_same_for_many_turns(kind, llama3_model, llama2_model, meta_llama3):
    """Once the context is full, the kept turns change only when half the budget is used up again; in
    between, each prompt begins with the previous one (so the KV cache is reused as it is)."""
    tok = load_tokenizer(llama3_model if kind == "llama3" else llama2_model, 2 if kind == "llama2" else 3)
    template = Llama3ChatTemplate() if kind == "llama3" else Llama2ChatTemplate()
    budget = 400
    turns = _grow(template, tok, 40, budget)
    cuts = [first for first, _, _ in turns]
    assert all(len(ids) <= budget for _, ids, _ in turns)
    assert cuts == sorted(cuts) and cuts[-1] > 1, "the conversation must have outgrown the context"
    changes = [t for t in range(1, len(turns)) if cuts[t] != cuts[t - 1]]
    overflowing = len(turns) - cuts.index(next(c for c in cuts if c > 1))
    assert 1 <= len(changes) <= overflowing // 4, (changes, overflowing)  # dropping one exchange a turn: ~every turn
    for t in range(1, len(turns)):
        if t not in changes:
            assert turns[t][1][:len(turns[t - 1][1])] == turns[t - 1][1]
    for t in changes:
        assert len(turns[t][1]) <= budget * KEEP_AFTER_DROP + 60  # ~half, give or take the new exchange
    if kind == "llama3":                          # and every prompt is Meta's, token for token
        msgs = [{"role": "system", "content": "Answer briefly."}]
        for t, (first, ids, answer) in enumerate(turns):
            msgs.append({"role": "user", "content": f"Tell me fact number {t} about the sea, please. 第{t}个。"})
            assert ids == meta_llama3.encode_dialog_prompt([msgs[0]] + msgs[first:])
            msgs.append({"role": "assistant", "content": answer})


@pytest.mark.parametrize("system", [True, False], ids=["system", "no_system"])
def test_a_message_that_alone_is_too_long_is_refused_with_the_numbers(spm_model, system):
    tok = load_tokenizer(spm_model, 2)
    meta = MetaLlama2Tokenizer(spm_model)
    msgs = _conversation(system, exchanges=3)
    msgs[-1] = {"role": "user", "content": "请把这段话翻译成英文：" + "今天天气很好，我们去公园散步吧。" * 40}
    alone = (msgs[:1] if system else []) + msgs[-1:]
    needed = len(meta_llama2_chat_tokens(alone, meta))
    kept, ids = fit_to_context(msgs, Llama2ChatTemplate(), tok, budget=needed)
    assert kept == alone and len(ids) == needed
    with pytest.raises(GenerationError, match="too long") as err:
        fit_to_context(msgs, Llama2ChatTemplate(), tok, budget=needed - 1)
    assert f"{needed} tokens" in str(err.value) and f"{needed - 1} fit" in str(err.value)


class CountingTokenizer:
    """A real tokenizer that counts how often it is asked to encode."""

    def __init__(self, tokenizer):
        self.inner, self.calls = tokenizer, 0

    def encode(self, text, bos=False):
        self.calls += 1
        return self.inner.encode(text, bos=bos)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("template", [Llama2ChatTemplate(), Llama3ChatTemplate(), BaseTranscriptTemplate()],
                         ids=lambda t: t.name)
def test_each_message_is_encoded_once_however_much_is_dropped(template, llama2_model, llama3_model):
    """4,000 tiny messages, nearly all dropped: the encodings grow with the messages, not with their square."""
    tok = CountingTokenizer(load_tokenizer(llama3_model if template.name.startswith("llama3") else llama2_model,
                                           3 if template.name.startswith("llama3") else 2))
    msgs = [{"role": "system", "content": "Be brief."}]
    for i in range(2000):
        msgs += [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "ok"}]
    msgs.append({"role": "user", "content": "last"})
    kept, ids = fit_to_context(msgs, template, tok, budget=300)
    assert len(ids) <= 300 and kept[0] == msgs[0] and kept[-1] == msgs[-1] and len(kept) < 200
    assert tok.calls <= 2 * len(msgs) + 20, tok.calls
