"""Tokenizers for LLaMA2 (SentencePiece or fast), LLaMA3 (tiktoken) and GGUF BPE models.

Backends are imported only when asked for, so ``import engine.text.tokenizers``
stays cheap and works even if one backend library is missing.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import TokenizerError

from .base import Tokenizer

__all__ = ["Tokenizer", "load_tokenizer", "load_tokenizer_json", "save_gguf_tokenizer"]


def load_tokenizer(path: str | Path, version: int, fast: bool = False) -> Tokenizer:
    """LLaMA ``version`` 2 or 3 tokenizer from Meta's tokenizer.model at ``path``.

    ``fast`` picks the HF ``tokenizers`` build for LLaMA2 (same ids, faster);
    LLaMA3's tiktoken tokenizer is already fast, so ``fast`` is ignored there.
    """
    if version == 2:
        if fast:
            from .fast_tokenizer import FastSentencePieceTokenizer

            return FastSentencePieceTokenizer(path)
        from .sentencepiece_tokenizer import SentencePieceTokenizer

        return SentencePieceTokenizer(path)
    if version == 3:
        from .tiktoken_tokenizer import TiktokenTokenizer

        return TiktokenTokenizer(path)
    raise TokenizerError(
        f"Unknown LLaMA version {version!r} for tokenizer {path}: expected 2 or 3."
,
        code="tokenizer_version_unknown", params={"version": version, "path": path})


def load_tokenizer_json(path: str | Path) -> Tokenizer:
    """A HF tokenizer.json written by ``save_gguf_tokenizer`` (bos/eos from its side file)."""
    from .bpe_tokenizer import JsonBpeTokenizer

    return JsonBpeTokenizer(path)


def save_gguf_tokenizer(gguf_path: str | Path, out_json_path: str | Path) -> Path:
    """Convert a GGUF's byte-level BPE tokenizer to tokenizer.json; returns its path."""
    from .bpe_tokenizer import save_gguf_tokenizer as _save

    return _save(gguf_path, out_json_path)
