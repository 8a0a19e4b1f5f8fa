"""LLaMA2's tokenizer on Hugging Face ``tokenizers`` (Rust), built in code.

There is no ``transformers`` here, so this does what its LlamaConverter does:
a BPE model whose merges are derived from the SentencePiece vocabulary and
ordered by the merged piece's score, byte fallback, and the "legacy" LLaMA
normalizer (prepend "▁", spaces become "▁"). Building takes well under a
second, so nothing is cached on disk.

Decoding does not use the HF decoder: its ByteFallback turns a whole run of
bytes into U+FFFD when any byte is invalid, and it strips a leading space that
came from a byte piece, where SentencePiece does neither. A small table-driven
decoder reproduces SentencePiece exactly, which matters while streaming
half-finished UTF-8 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.errors import TokenizerError

from .base import Tokenizer, read_tokenizer_file, require_module
from .sentencepiece_tokenizer import load_model_proto

SPACE = "\u2581"  # SentencePiece's visible space "▁"
# sentencepiece_model.proto piece types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE, UNUSED = 1, 2, 3, 4, 6, 5


def sentencepiece_merges(pieces: Sequence[tuple[str, float]]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary.

    Every split of a piece into two pieces of the vocabulary is a merge; they
    are applied in the order SentencePiece would, highest piece score first
    (ties keep vocabulary order), like transformers' SentencePieceExtractor.
    """
    vocab = {piece: i for i, (piece, _score) in enumerate(pieces)}
    scored: list[tuple[float, str, str]] = []
    for piece, score in pieces:
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right))
        local.sort()
        scored.extend((score, left, right) for _l, _r, left, right in local)
    scored.sort(key=lambda m: -m[0])  # stable: equal scores keep their order
    return [(left, right) for _score, left, right in scored]


def _check_supported(path: Path, proto) -> None:
    """Refuse models whose SentencePiece behaviour this conversion does not copy."""
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    problems = []
    if trainer.model_type != trainer.BPE:
        problems.append("it is not a BPE model")
    if norm.precompiled_charsmap or norm.name not in ("identity", ""):
        problems.append(f"its normalizer '{norm.name}' changes the text")
    if norm.remove_extra_whitespaces:
        problems.append("it removes extra whitespace")
    if trainer.treat_whitespace_as_suffix:
        problems.append("it treats whitespace as a suffix")
    if any(p.type == USER_DEFINED for p in proto.pieces):
        problems.append("it has user-defined pieces")
    if not trainer.byte_fallback:
        problems.append("it has no byte fallback")
    if problems:
        raise TokenizerError(
            f"{path} cannot be used with the fast tokenizer: {'; '.join(problems)}. "
            f"The fast tokenizer supports LLaMA2-style SentencePiece models only; "
            f"run without --fast to use SentencePiece itself."
,
            code="fast_tokenizer_unsupported", params={"path": path, "problems": "; ".join(problems)})


def build_hf_tokenizer(proto):
    """A ``tokenizers.Tokenizer`` giving SentencePiece's ids for ``proto``."""
    hf = require_module("tokenizers", "tokenizers")
    from tokenizers import AddedToken, decoders, models, normalizers

    pieces = [(p.piece, p.score) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _score) in enumerate(pieces)}
    model = models.BPE(
        vocab,
        sentencepiece_merges(pieces),
        unk_token=proto.trainer_spec.unk_piece or "<unk>",
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = hf.Tokenizer(model)
    steps = [normalizers.Replace(" ", SPACE)]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend(SPACE))
    tok.normalizer = normalizers.Sequence(steps)
    strip = [decoders.Strip(" ", 1, 0)] if proto.normalizer_spec.add_dummy_prefix else []
    tok.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), *strip]
    )
    specials = [p.piece for p in proto.pieces if p.type in (CONTROL, UNKNOWN)]
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    # User text never turns into control tokens (SentencePiece never does that).
    tok.encode_special_tokens = True
    return tok


class _SentencePieceDecoder:
    """Decodes ids exactly like ``SentencePieceProcessor.decode``."""

    def __init__(self, proto):
        self._kind: list[int] = []
        self._text: list[str] = []
        self._byte: list[int] = []
        self._dummy_prefix = bool(proto.normalizer_spec.add_dummy_prefix)
        unk_surface = proto.trainer_spec.unk_surface or " \u2047 "
        for p in proto.pieces:
            kind = p.type or NORMAL
            byte = int(p.piece[3:5], 16) if kind == BYTE else -1
            text = unk_surface if kind == UNKNOWN else p.piece
            self._kind.append(kind)
            self._text.append(text)
            self._byte.append(byte)

    def __call__(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        pending = bytearray()
        at_start = True  # the first visible piece loses its dummy-prefix "▁"
        for i in ids:
            kind = self._kind[i]
            if kind == BYTE:
                pending.append(self._byte[i])
                continue
            if pending:
                out.append(_bytes_to_text(bytes(pending)))
                pending.clear()
                at_start = False
            if kind in (CONTROL, UNUSED):
                continue
            text = self._text[i]
            if kind == NORMAL or kind == USER_DEFINED:
                if at_start and self._dummy_prefix and text.startswith(SPACE):
                    text = text[1:]
                text = text.replace(SPACE, " ")
            out.append(text)
            at_start = False
        if pending:
            out.append(_bytes_to_text(bytes(pending)))
        return "".join(out)


def _bytes_to_text(data: bytes) -> str:
    """UTF-8 decode where each invalid byte becomes one U+FFFD, as SentencePiece does."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i = [], 0
    while i < len(data):
        for n in (1, 2, 3, 4):
            try:
                out.append(data[i : i + n].decode("utf-8"))
                i += n
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


class FastSentencePieceTokenizer(Tokenizer):
    """LLaMA2 ids identical to SentencePiece, encoded by the Rust library."""

    def __init__(self, path: str | Path):
        self.path, data = read_tokenizer_file(path, 2)
        self.name = "llama2-fast"
        proto = load_model_proto(self.path, data)
        _check_supported(self.path, proto)
        self._tok = build_hf_tokenizer(proto)
        self._decode = _SentencePieceDecoder(proto)
        size = len(proto.pieces)
        self.vocab_size = size
        self.vocab_size_with_added = size
        spec = proto.trainer_spec
        self._specials = {
            p.piece: i for i, p in enumerate(proto.pieces) if p.type in (CONTROL, UNKNOWN)
        }
        bos, eos = spec.bos_id, spec.eos_id  # proto defaults: 1 and 2
        if not 0 <= eos < size:
            raise TokenizerError(
                f"{self.path} defines no end-of-sequence token; expected LLaMA2's "
                f"tokenizer.model (eos '</s>' = 2)."
,
                code="tokenizer_no_eos", params={"path": self.path})
        self.bos_id = bos if 0 <= bos < size else None
        self.eos_id = eos
        self.stop_ids = frozenset({eos})

    def _encode_text(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._decode(self._check_ids(ids))

    def special_id(self, token: str) -> int:
        try:
            return self._specials[token]
        except KeyError:
            raise self._unknown_special(token, list(self._specials)) from None

    def to_json(self) -> str:
        """The built tokenizer as HF tokenizer.json text (for inspection/export)."""
        return self._tok.to_str()
