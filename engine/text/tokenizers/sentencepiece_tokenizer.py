"""LLaMA2's tokenizer through Google's SentencePiece, the reference behaviour.

The model is loaded from bytes rather than a path because SentencePiece opens
paths with the C++ runtime, which fails on Windows for non-ASCII folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.errors import TokenizerError

from .base import Tokenizer, read_tokenizer_file, require_module


def load_processor(path: Path, data: bytes):
    """A SentencePieceProcessor for ``data`` read from ``path``."""
    spm = require_module("sentencepiece", "sentencepiece")
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(data)
    except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
        raise TokenizerError(
            f"{path} is not a valid SentencePiece model ({exc}). Expected Meta's "
            f"LLaMA2 tokenizer.model (about 500 KB); the file may be truncated: "
            f"download it again."
,
            code="sentencepiece_invalid", params={"path": path, "error": str(exc)}) from None
    return processor


def load_model_proto(path: Path, data: bytes):
    """The parsed ``ModelProto`` (pieces, trainer and normalizer specs)."""
    require_module("sentencepiece", "sentencepiece")
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise TokenizerError(
            f"{path} is not a valid SentencePiece model ({exc}). Expected Meta's "
            f"LLaMA2 tokenizer.model; download it again."
,
            code="sentencepiece_invalid", params={"path": path, "error": str(exc)}) from None
    if not proto.pieces:
        raise TokenizerError(f"{path} is a SentencePiece model with no pieces; download it again.",
                             code="sentencepiece_no_pieces", params={"path": path})
    return proto


class SentencePieceTokenizer(Tokenizer):
    """LLaMA2 tokenization exactly as Meta's reference code does it."""

    def __init__(self, path: str | Path):
        self.path, data = read_tokenizer_file(path, 2)
        self.name = "llama2-sentencepiece"
        self._sp = load_processor(self.path, data)
        size = self._sp.get_piece_size()
        self.vocab_size = size
        self.vocab_size_with_added = size
        bos, eos = self._sp.bos_id(), self._sp.eos_id()
        if eos < 0:
            raise TokenizerError(
                f"{self.path} defines no end-of-sequence token; expected LLaMA2's "
                f"tokenizer.model (eos '</s>' = 2)."
,
                code="tokenizer_no_eos", params={"path": self.path})
        self.bos_id = bos if bos >= 0 else None
        self.eos_id = eos
        self.stop_ids = frozenset({eos})
        self._specials = {
            self._sp.id_to_piece(i): i
            for i in range(size)
            if self._sp.is_control(i) or self._sp.is_unknown(i)
        }

    def _encode_text(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(self._check_ids(ids))

    def special_id(self, token: str) -> int:
        try:
            return self._specials[token]
        except KeyError:
            raise self._unknown_special(token, list(self._specials)) from None
