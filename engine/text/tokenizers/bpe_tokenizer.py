"""Byte-level BPE tokenizers (GPT-2 style) from a GGUF file, via HF ``tokenizers``.

The built-in SmolLM2-135M-Instruct model ships only as a GGUF, whose metadata
holds the vocabulary and merges. ``save_gguf_tokenizer`` turns them into a
standard ``tokenizer.json`` (plus a ``*_config.json`` naming bos/eos, as
Hugging Face keeps them) once; ``load_tokenizer_json`` loads that quickly.
The pre-tokenizer follows the GGUF's ``tokenizer.ggml.pre`` as llama.cpp does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import TokenizerError

from .base import Tokenizer, require_module
from .gguf_metadata import read_gguf_metadata
from .tiktoken_tokenizer import PAT_STR as LLAMA3_PAT_STR

# llama.cpp's pre-tokenizer names -> our recipe (see llama-vocab.cpp).
_PRE_LLAMA3 = {"llama3", "llama-v3", "llama-bpe"}  # Meta's regex, ignore_merges
_PRE_DIGITS = {"smollm", "starcoder", "refact"}  # \p{N} split, then GPT-2 regex
_PRE_GPT2 = {"gpt-2"}  # GPT-2 regex only
# Tokens that end an assistant turn in the chat formats we know.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>")
GGUF_CONTROL = 3  # llama.cpp token type for control tokens


def config_path(json_path: str | Path) -> Path:
    """The side file naming bos/eos: tokenizer.json -> tokenizer_config.json."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + "_config.json")


def _pre_tokenizer(path: Path, pre: str):
    """(pre_tokenizer, ignore_merges) for a GGUF's ``tokenizer.ggml.pre``."""
    from tokenizers import Regex, pre_tokenizers

    if pre in _PRE_LLAMA3:
        split = pre_tokenizers.Split(Regex(LLAMA3_PAT_STR), behavior="isolated", invert=False)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)
        return pre_tokenizers.Sequence([split, byte_level]), True
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre in _PRE_DIGITS:
        digits = pre_tokenizers.Digits(individual_digits=True)
        return pre_tokenizers.Sequence([digits, byte_level]), False
    if pre in _PRE_GPT2:
        return pre_tokenizers.Sequence([byte_level]), False
    known = ", ".join(sorted(_PRE_LLAMA3 | _PRE_DIGITS | _PRE_GPT2))
    raise TokenizerError(
        f"{path} uses the pre-tokenizer '{pre}', which this app does not support "
        f"(supported: {known}). Use a model whose GGUF says one of those."
,
        code="gguf_pre_tokenizer_unsupported", params={"path": path, "pre": pre, "known": known})


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file so a crash never leaves half a tokenizer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def save_gguf_tokenizer(gguf_path: str | Path, out_json_path: str | Path) -> Path:
    """Write the GGUF's byte-level BPE tokenizer as a HF tokenizer.json."""
    hf = require_module("tokenizers", "tokenizers")
    from tokenizers import AddedToken, decoders, models

    gguf_path, out_json_path = Path(gguf_path), Path(out_json_path)
    meta = read_gguf_metadata(gguf_path)
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise TokenizerError(
            f"{gguf_path} has a '{kind}' tokenizer; only byte-level BPE ('gpt2') GGUF "
            f"tokenizers can be converted. For LLaMA2/LLaMA3 use their tokenizer.model."
,
            code="gguf_tokenizer_kind", params={"path": gguf_path, "kind": kind})
    try:
        tokens: list[str] = meta["tokenizer.ggml.tokens"]
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
        types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        eos_id = int(meta["tokenizer.ggml.eos_token_id"])
    except KeyError as exc:
        raise TokenizerError(
            f"{gguf_path} has no {exc.args[0]} in its metadata; the GGUF has no complete "
            f"tokenizer. Use a GGUF converted with its tokenizer (llama.cpp convert_hf_to_gguf)."
,
            code="gguf_tokenizer_incomplete", params={"path": gguf_path, "key": exc.args[0]}) from None
    if len(types) != len(tokens) or not 0 <= eos_id < len(tokens):
        raise TokenizerError(f"{gguf_path} has inconsistent tokenizer metadata; download it again.",
                             code="gguf_tokenizer_inconsistent", params={"path": gguf_path})
    pre_tok, ignore_merges = _pre_tokenizer(gguf_path, meta.get("tokenizer.ggml.pre", "default"))

    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = hf.Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    controls = [tokens[i] for i, t in enumerate(types) if t == GGUF_CONTROL]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in controls])

    bos = meta.get("tokenizer.ggml.bos_token_id")
    config: dict[str, Any] = {
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None,
        "bos_token": tokens[bos] if bos is not None and 0 <= bos < len(tokens) else None,
        "eos_token": tokens[eos_id],
        "source_gguf": gguf_path.name,
        "gguf_pre_tokenizer": meta.get("tokenizer.ggml.pre", "default"),
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    _write_text(out_json_path, tok.to_str(pretty=False))
    _write_text(config_path(out_json_path), json.dumps(config, ensure_ascii=False, indent=2))
    return out_json_path


class JsonBpeTokenizer(Tokenizer):
    """A HF tokenizer.json (e.g. from ``save_gguf_tokenizer``) as a Tokenizer."""

    def __init__(self, path: str | Path):
        hf = require_module("tokenizers", "tokenizers")
        self.path = Path(path)
        self.name = "gguf-bpe"
        if not self.path.is_file():
            raise TokenizerError(
                f"Tokenizer file not found: {self.path}. Expected a tokenizer.json; "
                f"create it from the model's GGUF with save_gguf_tokenizer()."
,
                code="tokenizer_json_not_found", params={"path": self.path})
        try:
            self._tok = hf.Tokenizer.from_str(self.path.read_text(encoding="utf-8"))
        except Exception as exc:  # OSError, UnicodeDecodeError, tokenizers' Exception
            raise TokenizerError(
                f"{self.path} is not a valid Hugging Face tokenizer.json ({exc}); "
                f"create it again from the model's GGUF."
,
                code="tokenizer_json_invalid", params={"path": self.path, "error": str(exc)}) from None
        self._tok.encode_special_tokens = True  # user text stays text
        config = self._read_config()
        added = self._tok.get_added_tokens_decoder()
        self._specials = {t.content: i for i, t in sorted(added.items()) if t.special}
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=False)
        self.vocab_size_with_added = self._tok.get_vocab_size(with_added_tokens=True)

        eos_name = _token_text(config.get("eos_token"))
        if eos_name is None:
            eos_name = next((t for t in END_OF_TURN if t in self._specials), None)
        eos = self._tok.token_to_id(eos_name) if eos_name else None
        if eos is None:
            raise TokenizerError(
                f"Cannot tell the end-of-sequence token of {self.path}: expected "
                f"{config_path(self.path).name} next to it naming 'eos_token'. "
                f"Create both again with save_gguf_tokenizer()."
,
                code="tokenizer_no_eos_config", params={"path": self.path, "config": config_path(self.path).name})
        bos_name = _token_text(config.get("bos_token"))
        bos = self._tok.token_to_id(bos_name) if bos_name else None
        self.bos_id = bos if config.get("add_bos_token", False) else None
        self.eos_id = eos
        self.stop_ids = frozenset({eos, *(self._specials[t] for t in END_OF_TURN if t in self._specials)})

    def _read_config(self) -> dict[str, Any]:
        side = config_path(self.path)
        if not side.is_file():
            return {}
        try:
            config = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenizerError(
                f"{side} is not valid JSON ({exc}); delete it and create the tokenizer "
                f"again with save_gguf_tokenizer()."
,
                code="tokenizer_config_invalid", params={"path": side, "error": str(exc)}) from None
        return config if isinstance(config, dict) else {}

    def _encode_text(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(self._check_ids(ids), skip_special_tokens=True)

    def special_id(self, token: str) -> int:
        try:
            return self._specials[token]
        except KeyError:
            raise self._unknown_special(token, list(self._specials)) from None


def _token_text(value: Any) -> str | None:
    """HF configs give tokens as "text" or {"content": "text", ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None
