"""Bad option values and malformed conversations are refused with a message, by the API and by the command line,
before any model is loaded or any token computed."""

from __future__ import annotations

import math

import pytest

from engine import GenerationError, GenerationSettings
from fixtures import error_line, run_cli

BAD_SETTINGS = [
    ({"temperature": -1}, "temperature"), ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"), ({"temperature": "0.7"}, "temperature"),
    ({"top_k": -5}, "top_k"), ({"top_k": 2.5}, "top_k"), ({"top_k": True}, "top_k"),
    ({"top_p": 2}, "top_p"), ({"top_p": 0}, "top_p"), ({"top_p": math.nan}, "top_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"), ({"repetition_penalty": -1.1}, "repetition_penalty"),
    ({"repetition_penalty": math.nan}, "repetition_penalty"), ({"repetition_window": -1}, "repetition_window"),
    ({"seed": -1}, "seed"), ({"seed": 2 ** 63}, "seed"), ({"seed": 1.5}, "seed"),
    ({"max_new_tokens": -3}, "max_new_tokens"), ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"max_new_tokens": None}, "max_new_tokens"), ({"stop_strings": "END"}, "stop_strings"),
    ({"stop_strings": (1,)}, "stop_strings"),
]


@pytest.mark.parametrize("values, name", BAD_SETTINGS, ids=[repr(v) for v, _ in BAD_SETTINGS])
def test_bad_setting_values_are_refused_when_the_settings_are_made(values, name):
    with pytest.raises(GenerationError, match=name):
        GenerationSettings(**values)


def test_edge_values_that_mean_off_or_greedy_are_accepted():
    settings = GenerationSettings(temperature=0, top_k=0, top_p=1, repetition_penalty=1, repetition_window=0,
                                  seed=0, max_new_tokens=0, stop_strings=("\n\n",))
    assert settings.sampling().temperature == 0 and settings.max_new_tokens == 0


BAD_OPTIONS = [
    (["--temperature", "-1"], "--temperature must"), (["--temperature", "nan"], "--temperature must"),
    (["--repetition-penalty", "0"], "--repetition-penalty must"), (["--top-p", "2"], "--top-p must"),
    (["--top-p", "nan"], "--top-p must"), (["--top-k", "-5"], "--top-k must"), (["--max-seq-len", "0"], "context length"),
    (["--max-new-tokens", "-3"], "--max-new-tokens must"), (["--seed", "-1"], "--seed must"),
    (["--prompt-ids", "1,,2"], "comma-separated whole numbers"), (["--threads", "0"], "--threads must"),
]  # a command-line user is told the flag they typed, not the API's field name


@pytest.mark.parametrize("option, says", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_cli_refuses_bad_option_values_in_one_line_before_loading(llama2_tiny, option, says):
    ckpt, yml, _, _ = llama2_tiny
    prompt = [] if option[0] == "--prompt-ids" else ["--prompt-ids", "1,15,300"]
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, *prompt, *option)
    assert says in error_line(result)
    assert "weights:" not in result.stderr  # refused before reading a single weight


BAD_CONVERSATIONS = {
    "content-None": ([{"role": "user", "content": None}], r"Message 1 \(user\) needs text content, got NoneType"),
    "content-int": ([{"role": "user", "content": 42}], r"Message 1 \(user\) needs text content, got int"),
    "content-list": ([{"role": "user", "content": ["hi"]}], r"Message 1 \(user\) needs text content, got list"),
    "content-bytes": ([{"role": "user", "content": b"hi"}], r"Message 1 \(user\) needs text content, got bytes"),
    "earlier-answer-None": ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
                             {"role": "user", "content": "and?"}], r"Message 2 \(assistant\) needs text content"),
    "message-str": (["hello"], r"Message 1 must be a mapping with 'role' and 'content', got str"),
    "message-tuple": ([("user", "hello")], r"Message 1 must be a mapping .* got tuple"),
    "message-None": ([{"role": "user", "content": "hi"}, None], r"Message 2 must be a mapping .* got NoneType"),
    "no-role": ([{"content": "hi"}], r"Message 1 has an unknown role None"),
}


@pytest.mark.parametrize("case", BAD_CONVERSATIONS)
def test_malformed_messages_are_refused_naming_the_message(llama2_engine, case):
    messages, says = BAD_CONVERSATIONS[case]
    with pytest.raises(GenerationError, match=says):
        llama2_engine.chat(messages, GenerationSettings(greedy=True, max_new_tokens=2))
    assert not llama2_engine.busy
