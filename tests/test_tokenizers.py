"""Tokenizers: LLaMA2 SentencePiece vs fast parity, LLaMA3 tiktoken, GGUF BPE, clean errors.

Small models made in the session cover the logic everywhere; the real LLaMA
files (tests/assets.py) check the exact ids against llama.cpp's test cases.
"""

from __future__ import annotations

import hashlib
import random

import assets
import pytest

from engine.errors import TokenizerError
from engine.text.tokenizers import load_tokenizer, load_tokenizer_json, save_gguf_tokenizer
from engine.text.tokenizers.tiktoken_tokenizer import (
    MAX_NO_WHITESPACES_CHARS,
    split_long_runs,
)

TEXTS = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "Hello world", " Hello world",
    "  Hello  world  ", "hello\nworld", "trailing space ", "  leading", "a  b   c    d",
    "你好，世界！", "我们是中国人。", " 中文 English 混合 text", "中\n文", "1234567890", "3.14159",
    "year 2024, 12:30", "😀", "🦙 llama 🦙🦙", "👨‍👩‍👧", "emoji😀inside", "Ä ö ü ß é", "e\u0301",
    "龘齉靐", "日本語のテキスト", "한국어", "Привет мир", "مرحبا", "नमस्ते", "<s>", "</s>", "<unk>",
    "<s>hi</s>", "<|eot_id|>", "<|begin_of_text|>", "<|im_start|>user", "▁", "▁▁x", "\x00\x01",
    "don't you'll I'm", "x" * 200, "    def f(x):\n        return x  # comment\n",
]
CHARS = list("abcxyz ABC  \n\t0123456789.,!?'-") + list("你好中文的了是") + ["😀", "🦙", "é", "\u0301", "龘", "\u2581"]


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(0, 30))) for _ in range(n)]


# -- LLaMA2: SentencePiece and fast give the same ids and text -----------------

@pytest.mark.parametrize("size", [400, 1000])
def test_fast_matches_sentencepiece_on_trained_models(spm_models, size):
    slow = load_tokenizer(spm_models[size], 2)
    fast = load_tokenizer(spm_models[size], 2, fast=True)
    assert (slow.name, fast.name) == ("llama2-sentencepiece", "llama2-fast")
    assert fast.vocab_size == slow.vocab_size == size
    for text in TEXTS + random_texts(400, size):
        ids = slow.encode(text)
        assert fast.encode(text) == ids, text
        assert fast.encode(text, bos=True) == slow.encode(text, bos=True) == [1, *ids]
        assert fast.decode(ids) == slow.decode(ids), text
        if "\u2581" not in text:  # SentencePiece's own space marker decodes as " "
            assert slow.decode(ids) == text, text


def test_unknown_characters_use_byte_fallback(spm_model):
    tok = load_tokenizer(spm_model, 2)
    ids = tok.encode("😀")
    assert ids and all(3 <= i < 3 + 256 for i in ids[-4:])  # <0xF0><0x9F><0x98><0x80>
    assert tok.decode(ids) == "😀"


def test_fast_decode_matches_sentencepiece_on_any_ids(spm_model):
    """Partial UTF-8, control and unknown ids decode as SentencePiece does (streaming)."""
    slow = load_tokenizer(spm_model, 2)
    fast = load_tokenizer(spm_model, 2, fast=True)
    rng = random.Random(7)
    pools = [range(0, 3), range(3, 259), range(0xC3, 0xFF), range(259, slow.vocab_size)]
    for _ in range(3000):
        ids = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 8))]
        assert fast.decode(ids) == slow.decode(ids), ids


@pytest.mark.parametrize("fast", [False, True])
def test_llama2_specials(spm_model, fast):
    tok = load_tokenizer(spm_model, 2, fast=fast)
    assert (tok.bos_id, tok.eos_id, tok.stop_ids) == (1, 2, frozenset({2}))
    assert (tok.special_id("<s>"), tok.special_id("</s>"), tok.special_id("<unk>")) == (1, 2, 0)
    assert not {0, 1, 2} & set(tok.encode("<s>[INST] hi </s><unk>"))  # typed text stays text
    assert tok.decode([1, *tok.encode("hi"), 2]) == "hi"
    with pytest.raises(TokenizerError, match="<\\|eot_id\\|>"):
        tok.special_id("<|eot_id|>")


def test_fast_refuses_models_it_cannot_reproduce(spm_model, tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(spm_model.read_bytes())
    proto.normalizer_spec.remove_extra_whitespaces = True
    path = tmp_path / "tokenizer.model"
    path.write_bytes(proto.SerializeToString())
    load_tokenizer(path, 2)  # SentencePiece itself is fine with it
    with pytest.raises(TokenizerError, match="without --fast"):
        load_tokenizer(path, 2, fast=True)


# -- LLaMA3: tiktoken with Meta's special tokens -------------------------------

def test_tiktoken_specials_are_numbered_after_the_ranks(tiktoken_file):
    tok = load_tokenizer(tiktoken_file, 3, fast=True)  # fast is ignored
    n = 256 + 11
    assert (tok.name, tok.vocab_size, tok.vocab_size_with_added) == ("llama3-tiktoken", n, n + 256)
    assert tok.special_id("<|begin_of_text|>") == tok.bos_id == n
    assert tok.special_id("<|end_of_text|>") == tok.eos_id == n + 1
    assert (tok.special_id("<|start_header_id|>"), tok.special_id("<|end_header_id|>")) == (n + 6, n + 7)
    assert tok.special_id("<|eot_id|>") == n + 9
    assert tok.special_id("<|reserved_special_token_250|>") == n + 255
    assert tok.stop_ids == frozenset({n + 1, n + 9})
    with pytest.raises(TokenizerError):
        tok.special_id("<s>")


def test_tiktoken_encode_decode(tiktoken_file):
    tok = load_tokenizer(tiktoken_file, 3)
    ids = tok.encode("hello world", bos=True)
    assert ids == [tok.bos_id, 256 + 3, 256 + 8]  # "hello", " world"
    assert tok.decode(ids + [tok.special_id("<|eot_id|>")]) == "hello world"
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(i < tok.vocab_size for i in ids), text  # "<|eot_id|>" typed stays text
        assert tok.decode(ids) == text


def test_tiktoken_splits_very_long_runs(tiktoken_file):
    text = "a" * (MAX_NO_WHITESPACES_CHARS + 10) + " " * (MAX_NO_WHITESPACES_CHARS * 2 + 5) + "b"
    pieces = list(split_long_runs(text, MAX_NO_WHITESPACES_CHARS))
    assert "".join(pieces) == text and len(pieces) == 4
    tok = load_tokenizer(tiktoken_file, 3)
    assert tok.decode(tok.encode(text)) == text


# -- errors a user can cause ---------------------------------------------------

@pytest.mark.parametrize("version,fast", [(2, False), (2, True), (3, False)])
def test_missing_file_says_how_to_get_it(tmp_path, version, fast):
    path = tmp_path / "nowhere" / "tokenizer.model"
    with pytest.raises(TokenizerError) as err:
        load_tokenizer(path, version, fast=fast)
    assert str(path) in str(err.value) and err.value.path == path and err.value.subject == "tokenizer"
    assert f"comes with the LLaMA{version} checkpoint (checkpoint_download fetches both)" in str(err.value)
    assert "download.cmd" not in str(err.value) and " -F" not in str(err.value)  # front ends add their own hint


def test_wrong_version_is_named(spm_model, tiktoken_file):
    with pytest.raises(TokenizerError, match="looks like a LLaMA2"):
        load_tokenizer(spm_model, 3)
    for fast in (False, True):
        with pytest.raises(TokenizerError, match="looks like a LLaMA3"):
            load_tokenizer(tiktoken_file, 2, fast=fast)


@pytest.mark.parametrize("content,version,message", [
    (b"", 2, "empty"),
    (b"GGUF\x03\x00\x00\x00" + bytes(32), 3, "GGUF"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", 2, "Git LFS pointer"),
    (b'{"model": {}}', 2, "JSON"),
    (b"\x00\xffnot a tokenizer", 3, "not a tokenizer.model"),
    (b"IQ== 0\nIg== 1\n!!! 2\n", 3, "line 3"),
    (b"IQ== 0\nIg== 5\n", 3, "ranks"),
])
def test_damaged_files_give_clear_errors(tmp_path, content, version, message):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    with pytest.raises(TokenizerError, match=message) as err:
        load_tokenizer(path, version)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fast", [False, True])
def test_truncated_sentencepiece_model(spm_model, tmp_path, fast):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(spm_model.read_bytes()[:3001])
    with pytest.raises(TokenizerError, match="not a valid SentencePiece model"):
        load_tokenizer(path, 2, fast=fast)


def test_out_of_range_ids_and_unknown_version(spm_model, tiktoken_file):
    for tok in (load_tokenizer(spm_model, 2), load_tokenizer(spm_model, 2, fast=True),
                load_tokenizer(tiktoken_file, 3)):
        with pytest.raises(TokenizerError, match="do not belong together"):
            tok.decode([5, tok.vocab_size_with_added])
    with pytest.raises(TokenizerError, match="expected 2 or 3"):
        load_tokenizer(spm_model, 4)


# -- GGUF byte-level BPE -------------------------------------------------------

def byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def write_bpe_gguf(path, model="gpt2", pre="smollm", eos=2):
    import gguf

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
    tokens = specials + byte_level_alphabet() + [m.replace(" ", "") for m in merges]
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3] * 3 + [1] * (len(tokens) - 3))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_bpe_tokenizer(tmp_path):
    out = save_gguf_tokenizer(write_bpe_gguf(tmp_path / "m.gguf"), tmp_path / "tok" / "tokenizer.json")
    assert (tmp_path / "tok" / "tokenizer_config.json").is_file()
    tok = load_tokenizer_json(out)
    assert (tok.name, tok.bos_id, tok.eos_id) == ("gguf-bpe", None, 2)
    assert tok.stop_ids == frozenset({0, 2})
    assert (tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>")) == (1, 2)
    assert tok.vocab_size == tok.vocab_size_with_added == 3 + 256 + 9
    assert tok.encode("hello world", bos=True) == [3 + 256 + 3, 3 + 256 + 8]
    assert len(tok.encode("12345")) == 5  # digits are split one by one
    assert not {0, 1, 2} & set(tok.encode("<|im_start|>user<|im_end|>"))
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode([1, *tok.encode("hello"), 2]) == "hello"


def test_gguf_errors(tmp_path):
    with pytest.raises(TokenizerError, match="only byte-level BPE"):
        save_gguf_tokenizer(write_bpe_gguf(tmp_path / "a.gguf", model="llama"), tmp_path / "a.json")
    with pytest.raises(TokenizerError, match="pre-tokenizer 'qwen2'"):
        save_gguf_tokenizer(write_bpe_gguf(tmp_path / "b.gguf", pre="qwen2"), tmp_path / "b.json")
    (tmp_path / "c.gguf").write_bytes(b"not a gguf file at all, really")
    with pytest.raises(TokenizerError, match="not a GGUF file"):
        save_gguf_tokenizer(tmp_path / "c.gguf", tmp_path / "c.json")
    (tmp_path / "d.gguf").write_bytes(write_bpe_gguf(tmp_path / "d0.gguf").read_bytes()[:500])
    with pytest.raises(TokenizerError, match="damaged GGUF header"):
        save_gguf_tokenizer(tmp_path / "d.gguf", tmp_path / "d.json")
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer_json(tmp_path / "missing.json")
    (tmp_path / "e.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not a valid Hugging Face tokenizer.json"):
        load_tokenizer_json(tmp_path / "e.json")


# -- real LLaMA files (skipped with a reason when not fetched) -----------------

def test_rebuilt_llama2_model_is_byte_identical_to_metas(llama2_model):
    assert hashlib.sha256(llama2_model.read_bytes()).hexdigest() == assets.LLAMA2_SHA256


@pytest.mark.parametrize("fast", [False, True])
def test_llama2_matches_llama_cpp(llama2_model, spm_cases, fast):
    tok = load_tokenizer(llama2_model, 2, fast=fast)
    assert len(spm_cases) == 46
    for text, ids in spm_cases:  # llama.cpp's .out ids carry no BOS
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    assert tok.encode("Hello world", bos=True) == [1, 15043, 3186]
    assert (tok.vocab_size, tok.vocab_size_with_added) == (32000, 32000)


def test_llama2_fast_matches_sentencepiece_on_random_text(llama2_model):
    slow, fast = load_tokenizer(llama2_model, 2), load_tokenizer(llama2_model, 2, fast=True)
    for text in TEXTS + random_texts(500, 2):
        ids = slow.encode(text, bos=True)
        assert fast.encode(text, bos=True) == ids, text
        assert fast.decode(ids) == slow.decode(ids)


def test_llama3_matches_llama_cpp(llama3_model, bpe_cases):
    tok = load_tokenizer(llama3_model, 3)
    assert len(bpe_cases) == 46
    for text, ids in bpe_cases:
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    assert tok.encode("Hello world") == [9906, 1917]
    assert tok.encode("Hello world", bos=True) == [128000, 9906, 1917]
    assert (tok.vocab_size, tok.vocab_size_with_added) == (128000, 128256)
    assert tok.special_id("<|eot_id|>") == 128009 and tok.stop_ids == frozenset({128001, 128009})
    assert 128009 not in tok.encode("<|eot_id|>")


def test_llama3_gguf_vocab_converts_to_the_same_ids(llama_bpe_gguf, bpe_cases, tmp_path):
    tok = load_tokenizer_json(save_gguf_tokenizer(llama_bpe_gguf, tmp_path / "tokenizer.json"))
    for text, ids in bpe_cases:
        assert tok.encode(text) == ids, text
    assert tok.special_id("<|eot_id|>") in tok.stop_ids


def test_smollm2_gguf_tokenizer(smollm2_gguf, tmp_path):
    tok = load_tokenizer_json(save_gguf_tokenizer(smollm2_gguf, tmp_path / "tokenizer.json"))
    assert tok.encode("What is the capital of France?") == [1780, 314, 260, 3575, 282, 4649, 47]
    assert (tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>"), tok.bos_id) == (1, 2, None)
    assert {0, 2} <= tok.stop_ids and tok.vocab_size == 49152
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text


def test_mistral_v1_fast_matches_sentencepiece():
    path = assets.require_asset("mistral-tokenizer")
    slow, fast = load_tokenizer(path, 2), load_tokenizer(path, 2, fast=True)
    for text in TEXTS + random_texts(200, 3):
        assert fast.encode(text, bos=True) == slow.encode(text, bos=True), text
