"""LLaMA3's tokenizer: Meta's tiktoken BPE file with Meta's split pattern.

This mirrors Meta's llama3 ``tokenizer.py`` (special tokens, pattern, input
splitting) so ids match the released models; it parses the rank file itself
so a wrong file gives a clear message instead of a base64 traceback.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.errors import TokenizerError

from .base import Tokenizer, read_tokenizer_file, require_module

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_RESERVED_SPECIAL_TOKENS = 256
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",  # end of turn
] + [f"<|reserved_special_token_{i}|>" for i in range(5, NUM_RESERVED_SPECIAL_TOKENS - 5)]

# tiktoken panics above ~400k characters, and is very slow on long runs of
# whitespace or non-whitespace (openai/tiktoken#195); Meta splits like this.
TIKTOKEN_MAX_ENCODE_CHARS = 400_000
MAX_NO_WHITESPACES_CHARS = 25_000


def parse_ranks(path: Path, data: bytes) -> dict[bytes, int]:
    """The "<base64 token> <rank>" lines of a tiktoken BPE file."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{path} line {lineno} is not '<base64 token> <rank>': the file is not "
                f"a valid LLaMA3 tokenizer.model (truncated or a different format). "
                f"download it again."
,
                code="tiktoken_bad_line", params={"path": path, "line": lineno}) from None
    if not ranks:
        raise TokenizerError(f"{path} has no tokens; download it again.",
                             code="tiktoken_no_tokens", params={"path": path})
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(
            f"{path} has {len(ranks)} tokens but their ranks are not 0..{len(ranks) - 1}: "
            f"the file is damaged; download it again."
,
            code="tiktoken_ranks_damaged", params={"path": path, "tokens": len(ranks), "largest": len(ranks) - 1})
    return ranks


def split_long_runs(s: str, max_len: int) -> Iterator[str]:
    """Split ``s`` so no piece has more than ``max_len`` consecutive (non-)spaces."""
    current_len = 0
    current_is_space = s[0].isspace() if s else False
    start = 0
    for i, ch in enumerate(s):
        is_space = ch.isspace()
        if current_is_space ^ is_space:
            current_len = 1
            current_is_space = is_space
        else:
            current_len += 1
            if current_len > max_len:
                yield s[start:i]
                start = i
                current_len = 1
    yield s[start:]


class TiktokenTokenizer(Tokenizer):
    """LLaMA3 tokenization, ids identical to Meta's reference tokenizer."""

    def __init__(self, path: str | Path):
        self.path, data = read_tokenizer_file(path, 3)
        self.name = "llama3-tiktoken"
        tiktoken = require_module("tiktoken", "tiktoken")
        ranks = parse_ranks(self.path, data)
        base = len(ranks)
        self._specials = {tok: base + i for i, tok in enumerate(SPECIAL_TOKENS)}
        try:
            self._enc = tiktoken.Encoding(
                name=self.path.name,
                pat_str=PAT_STR,
                mergeable_ranks=ranks,
                special_tokens=self._specials,
            )
        except Exception as exc:  # tiktoken validates ranks in Rust
            raise TokenizerError(
                f"{self.path} could not be loaded as a LLaMA3 tokenizer ({exc}); "
                f"download it again."
,
                code="tiktoken_load_failed", params={"path": self.path, "error": str(exc)}) from None
        self.vocab_size = base
        self.vocab_size_with_added = base + len(SPECIAL_TOKENS)
        self.bos_id = self._specials["<|begin_of_text|>"]
        self.eos_id = self._specials["<|end_of_text|>"]
        self.stop_ids = frozenset({self.eos_id, self._specials["<|eot_id|>"]})

    def _encode_text(self, text: str) -> list[int]:
        ids: list[int] = []
        for i in range(0, len(text), TIKTOKEN_MAX_ENCODE_CHARS):
            chunk = text[i : i + TIKTOKEN_MAX_ENCODE_CHARS]
            for piece in split_long_runs(chunk, MAX_NO_WHITESPACES_CHARS):
                # Special-token text from a user is encoded as ordinary text.
                ids.extend(self._enc.encode(piece, allowed_special=set(), disallowed_special=()))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        base = self.vocab_size
        return self._enc.decode([i for i in self._check_ids(ids) if i < base])

    def special_id(self, token: str) -> int:
        try:
            return self._specials[token]
        except KeyError:
            raise self._unknown_special(token, list(self._specials)) from None
