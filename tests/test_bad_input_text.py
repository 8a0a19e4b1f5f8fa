"""Text that is not valid Unicode (a command line in another encoding, invalid UTF-8 piped in) and values that
are not text at all: no traceback, the program goes on, and the tokenizers say they take text."""

from __future__ import annotations

import json
import os

import pytest

import reference_llama as ref
from engine import GenerationError
from engine.errors import TokenizerError
from engine.text.chat_template import template_for
from engine.text.tokenizers import load_tokenizer
from fixtures import compile_cache_env, run_cli

posix_argv = pytest.mark.skipif(os.name == "nt", reason="Windows passes the command line as UTF-16, never as bytes")
LONE_SURROGATE = "caf\udcff au lait"  # what Python makes of the bytes b"caf\xff au lait" on a POSIX command line
REPLACED = "caf\ufffd au lait"


@posix_argv
def test_prompt_argument_that_is_not_utf8_is_answered(llama2_tiny, spm_model, cli_compile_cache):
    ckpt, yml, weights, spec = llama2_tiny
    assert os.fsencode(LONE_SURROGATE) == b"caf\xff au lait"
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", spm_model, "--backend", "mindspore",
                     "--prompt", LONE_SURROGATE, "--greedy", "--max-new-tokens", "5", "--json",
                     env_extra=compile_cache_env(cli_compile_cache, yml))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    want = template_for("llama2").render([{"role": "user", "content": REPLACED}], load_tokenizer(spm_model, 2))
    assert out["prompt_ids"] == want
    assert out["output_ids"] == ref.answer(weights, spec.hp, want, 5, stop={spec.eos}, limit=1000)


@posix_argv
def test_tokenizer_text_argument_that_is_not_utf8_is_encoded(spm_model):
    result = run_cli("run_tokenizer.py", "-V", "2", "-F", spm_model, "--text", LONE_SURROGATE, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["text"] == REPLACED and out["ids"] == load_tokenizer(spm_model, 2).encode(REPLACED, bos=True)


def test_invalid_utf8_typed_into_the_chat_is_answered_and_the_chat_goes_on(llama2_tiny, spm_model,
                                                                           cli_compile_cache):
    ckpt, yml, _, _ = llama2_tiny
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "-F", spm_model, "--backend", "mindspore",
                     "--max-new-tokens", "3", "--greedy", stdin=b"caf\xff\xfe au lait\nhello\n/exit\n",
                     env_extra=compile_cache_env(cli_compile_cache, yml))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("first token after") == 2  # both lines answered


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("value", [None, 42, b"hello", ["hello"]], ids=["None", "int", "bytes", "list"])
def test_llama2_tokenizers_take_only_text(spm_model, fast, value):
    tokenizer = load_tokenizer(spm_model, 2, fast=fast)
    with pytest.raises(TokenizerError, match=r"take text \(str\), got " + type(value).__name__):
        tokenizer.encode(value)
    assert tokenizer.encode(LONE_SURROGATE) == tokenizer.encode(REPLACED)


@pytest.mark.parametrize("value", [None, 42, b"hello", ["hello"]], ids=["None", "int", "bytes", "list"])
def test_llama3_tokenizer_takes_only_text(tiktoken_file, value):
    tokenizer = load_tokenizer(tiktoken_file, 3)
    with pytest.raises(TokenizerError, match=r"take text \(str\), got " + type(value).__name__):
        tokenizer.encode(value)
    assert tokenizer.encode(LONE_SURROGATE) == tokenizer.encode(REPLACED)


def test_completing_something_that_is_not_text_is_refused(llama2_engine):
    for value in (None, b"hello", 42):
        with pytest.raises(GenerationError):
            llama2_engine.complete_text(value)
