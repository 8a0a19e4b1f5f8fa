"""Our tokenizers against MindFormers' on the real LLaMA2/LLaMA3 tokenizer files.

Needs the optional extra (``python install.py --mindformers``). MindFormers
2.0.0 ships LlamaTokenizer and LlamaTokenizerFast; its LLaMA3 tokenizer lives in
MindFormers' source tree (research/llama3/llama3_tokenizer.py), not in the
wheel: set LLAMA_DESK_MF_LLAMA3_TOKENIZER to that file to compare it too.

Same ids and text for ordinary text (English, Chinese, emoji, digits); the
differences are by design and pinned here: MindFormers turns special-token
text typed by a user ("<s>", "<|eot_id|>") into control tokens, where we keep
it as text (Meta's chat rules); its slow LLaMA2 tokenizer drops one leading
space when decoding; its LLaMA3 tokenizer splits numbers into single digits
(Meta: up to three) and NFC-normalizes the text first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.text.tokenizers import load_tokenizer
from engine.text.tokenizers.mindformers_counts import mindformers_vocab_sizes
from fixtures import run_cli

TEXTS = ["Hello world", "你好，世界！今天天气怎么样？", "emoji 🦙🚀 and ZWJ 👩‍💻", "inner  spaces\nand\ttabs  ",
         "Mixed 中英 text, 标点。", "a", "llama.cpp's tokenizer: don't, won't"]
LLAMA3_ENV = "LLAMA_DESK_MF_LLAMA3_TOKENIZER"


@pytest.fixture(scope="module")
def mindformers():
    from engine.backends.mindformers.mindformers_patches import import_mindformers, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"{reason} (optional extra)")
    return import_mindformers()


@pytest.fixture(scope="module")
def mf_llama2(mindformers, llama2_model):
    from mindformers.models.llama import LlamaTokenizer, LlamaTokenizerFast

    return LlamaTokenizer(str(llama2_model)), LlamaTokenizerFast(vocab_file=str(llama2_model))


@pytest.fixture(scope="module")
def mf_llama3(mindformers, llama3_model):
    path = os.environ.get(LLAMA3_ENV)
    if not path or not os.path.isfile(path):
        pytest.skip(f"MindFormers 2.0.0's wheel has no LLaMA3 tokenizer; set {LLAMA3_ENV} to "
                    "research/llama3/llama3_tokenizer.py of a MindFormers source tree to compare it")
    spec = importlib.util.spec_from_file_location("mf_llama3_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Llama3Tokenizer(str(llama3_model))


@pytest.mark.parametrize("fast", [False, True], ids=["sentencepiece", "fast"])
def test_llama2_ids_text_and_sizes_match_mindformers(mf_llama2, llama2_model, fast):
    slow, mf_fast = mf_llama2
    ours = load_tokenizer(llama2_model, 2, fast=fast)
    for text in TEXTS + ["numbers 12345 and 3.14159"]:
        ids = ours.encode(text, bos=True)
        assert slow.encode(text) == ids == mf_fast.encode(text), text
        assert slow.decode(ids, skip_special_tokens=True) == ours.decode(ids) == text
    sizes = mindformers_vocab_sizes(ours)
    assert (sizes.vocab_size, sizes.with_added_tokens) == (slow.vocab_size, len(slow)) == (32000, 32003)
    assert sorted(slow.added_tokens_encoder) == sorted(sizes.counted_twice)
    assert {ours.special_id(t) for t in sizes.counted_twice} == set(slow.added_tokens_encoder.values()) == {0, 1, 2}
    assert len(mf_fast) == ours.vocab_size_with_added == 32000  # the fast one counts each id once


def test_our_tokenizer_and_mindformers_fast_one_share_a_process(mindformers, llama2_model):
    """A fresh process in the order a user's has it: MindSpore (which switches protobuf to pure Python),
    our fast LLaMA2 tokenizer (sentencepiece's proto module), then MindFormers' fast tokenizer (its own copy)."""
    script = (
        "import sys, mindspore\n"
        "from engine.text.tokenizers import load_tokenizer\n"
        "from engine.backends.mindformers.mindformers_patches import import_mindformers\n"
        "ours = load_tokenizer(sys.argv[1], 2, fast=True)\n"
        "import_mindformers()\n"
        "from mindformers.models.llama import LlamaTokenizerFast\n"
        "fast = LlamaTokenizerFast(vocab_file=sys.argv[1])\n"
        "print(fast.encode('你好 hi') == ours.encode('你好 hi', bos=True))\n")
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    done = subprocess.run([sys.executable, "-c", script, str(llama2_model)], capture_output=True, text=True,
                          encoding="utf-8", env=env, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("True"), done.stderr[-2000:]


def test_llama2_known_differences(mf_llama2, llama2_model):
    slow, fast = mf_llama2
    ours = load_tokenizer(llama2_model, 2)
    assert slow.encode("<s>hi</s>") == [1, 1, 7251, 2]              # typed special text becomes control tokens
    assert 2 not in ours.encode("<s>hi</s>", bos=True) and ours.decode(ours.encode("<s>hi</s>")) == "<s>hi</s>"
    ids = ours.encode(" one", bos=True)                              # same ids, but the slow decoder
    assert slow.encode(" one") == ids and slow.decode(ids, skip_special_tokens=True) == "one"  # drops a space
    assert fast.decode(ids, skip_special_tokens=True) == ours.decode(ids) == " one"


def test_llama3_ids_text_and_sizes_match_mindformers(mf_llama3, llama3_model):
    ours = load_tokenizer(llama3_model, 3)
    for text in TEXTS:
        ids = ours.encode(text, bos=True)
        assert mf_llama3.encode(text) == ids, text
        assert mf_llama3.decode(ids, skip_special_tokens=True) == ours.decode(ids) == text
    sizes = mindformers_vocab_sizes(ours)
    assert (sizes.vocab_size, sizes.with_added_tokens) == (mf_llama3.vocab_size, len(mf_llama3)) == (128256, 128259)
    assert sorted(mf_llama3.added_tokens_encoder) == sorted(sizes.counted_twice)


def test_llama3_known_differences(mf_llama3, llama3_model):
    ours = load_tokenizer(llama3_model, 3)
    assert ours.encode("12345") == [4513, 1774]                     # Meta's rule: up to 3 digits per token
    assert mf_llama3.encode("12345")[1:] == [16, 17, 18, 19, 20]    # MindFormers': one digit per token
    assert mf_llama3.encode("<|eot_id|>")[1:] == [128009]           # typed special text becomes a control token
    assert 128009 not in ours.encode("<|eot_id|>")
    decomposed = "e\u0301"                                          # NFC-normalized by MindFormers only
    assert mf_llama3.encode(decomposed)[1:] == ours.encode("\u00e9") != ours.encode(decomposed)


@pytest.mark.parametrize("version, figures, ours", [(2, (32000, 32003), (32000, 32000)),
                                                    (3, (128256, 128259), (128000, 128256))])
def test_run_tokenizer_prints_mindformers_figures_beside_ours(version, figures, ours, llama2_model, llama3_model):
    """Runs without the extra: the figures follow from the files and MindFormers' counting rule."""
    path = llama2_model if version == 2 else llama3_model
    plain = run_cli("run_tokenizer.py", "-V", version, "-F", path, "--text", "Hi")
    assert plain.returncode == 0, plain.stderr
    assert f"vocab_size: {figures[0]}\nvocab_size (with added tokens): {figures[1]}\n" in plain.stdout
    assert f"vocab size: {ours[0]} ({ours[1]} with special tokens)" in plain.stdout
    res = json.loads(run_cli("run_tokenizer.py", "-V", version, "-F", path, "--text", "Hi", "--json").stdout)
    assert (res["mindformers"]["vocab_size"], res["mindformers"]["vocab_size_with_added_tokens"]) == figures
    assert (res["vocab_size"], res["vocab_size_with_added"]) == ours
