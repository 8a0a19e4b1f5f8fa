"""The interface every tokenizer backend implements, plus shared file checks.

The chat loop only needs ids in, text out and the ids that end a turn, so the
backends (SentencePiece, HF ``tokenizers``, tiktoken) hide behind one small
class. The file checks live here so that every backend reports a missing,
empty or wrong-kind file the same way: a ``TokenizerError`` naming the file,
what was expected and what to do, never a library traceback.
"""

from __future__ import annotations

import abc
import functools
import importlib
import re
from collections.abc import Sequence
from pathlib import Path

from engine.errors import TokenizerError

# How to get each version's tokenizer file; used in "file not found" messages.
DOWNLOAD_HINT = {
    2: "it comes with the LLaMA2 checkpoint (checkpoint_download fetches both)",
    3: "it comes with the LLaMA3 checkpoint (checkpoint_download fetches both)",
}
VERSION_NAME = {2: "LLaMA2 (SentencePiece)", 3: "LLaMA3 (tiktoken)"}

# A tiktoken BPE file is lines of "<base64 token> <rank>".
_TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+=* \d+\r?$")


class Tokenizer(abc.ABC):
    """Text <-> token ids for one model family; user text is always plain text."""

    name: str
    path: Path
    bos_id: int | None
    eos_id: int
    stop_ids: frozenset[int]
    vocab_size: int
    vocab_size_with_added: int

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Ids for ``text``; special-token text typed by a user stays text.

        Text that is not valid Unicode (a lone surrogate from a broken paste or a
        command line in another encoding) is encoded with U+FFFD in its place.
        """
        ids = self._encode_text(clean_text(text))
        return [self.bos_id] + ids if bos and self.bos_id is not None else ids

    @property
    def control_ids(self) -> frozenset[int]:
        """Ids that mark structure (bos, eos, end of turn, headers), never words of the text."""
        ids = set(getattr(self, "_specials", {}).values()) | set(self.stop_ids) | {self.eos_id}
        if self.bos_id is not None:
            ids.add(self.bos_id)
        return frozenset(ids)

    @functools.cached_property
    def longest_token_bytes(self) -> int:
        """The most UTF-8 bytes of text one token stands for (plus the word-start space SentencePiece drops when
        a piece is decoded alone): text of n bytes needs at least n / this many tokens, so a prompt far too
        long for the context can be refused by its length, before the work of tokenizing it."""
        skip = self.control_ids
        return 1 + max((len(self.decode([i]).encode("utf-8")) for i in range(self.vocab_size_with_added)
                        if i not in skip), default=1)

    @abc.abstractmethod
    def _encode_text(self, text: str) -> list[int]:
        """Ids for ``text`` alone, no BOS."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``; bos/eos/control ids decode to ""."""

    @abc.abstractmethod
    def special_id(self, token: str) -> int:
        """Id of a special (control) token such as "<|eot_id|>"."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.path}>"

    # -- helpers shared by the backends ------------------------------------

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        """Reject ids the vocabulary does not have (model/tokenizer mismatch)."""
        ids = [int(i) for i in ids]
        limit = self.vocab_size_with_added
        for i in ids:
            if not 0 <= i < limit:
                raise TokenizerError(
                    f"Token id {i} is outside the vocabulary of {self.path} "
                    f"(0..{limit - 1}). The model and the tokenizer file do not "
                    f"belong together: use the tokenizer that came with the model."
,
                    code="token_id_out_of_range", params={"id": i, "path": self.path, "largest": limit - 1})
        return ids

    def _unknown_special(self, token: str, known: Sequence[str]) -> TokenizerError:
        shown = ", ".join(list(known)[:8])
        return TokenizerError(
            f"{token!r} is not a special token of {self.path} ({self.name}). "
            f"Known special tokens include: {shown}."
,
            code="special_token_unknown", params={"token": token, "path": self.path, "name": self.name, "known": shown})


def clean_text(text) -> str:
    """``text`` as valid Unicode: lone surrogates become U+FFFD; anything but a str is refused."""
    if not isinstance(text, str):
        raise TokenizerError(f"Tokenizers take text (str), got {type(text).__name__}.",
                             code="tokenizer_input_not_text", params={"type": type(text).__name__})
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def require_module(module: str, pip_name: str):
    """Import a backend library, or explain which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TokenizerError(
            f"The Python package '{pip_name}' is needed to load this tokenizer "
            f"but could not be imported ({exc}). Install it with "
            f"'python -m pip install {pip_name}' in the app's environment."
,
            code="python_package_missing", params={"package": pip_name, "error": str(exc)}) from None


def sniff(data: bytes) -> str:
    """Guess a tokenizer file's kind from its first bytes.

    Returns "gguf", "lfs-pointer", "json", "tiktoken", "sentencepiece",
    "empty" or "unknown". Good enough to tell LLaMA2 and LLaMA3 files apart
    and give a useful message; the real parsers still validate everything.
    """
    if not data:
        return "empty"
    if data[:4] == b"GGUF":
        return "gguf"
    if data.startswith(b"version https://git-lfs"):
        return "lfs-pointer"
    if data.lstrip()[:1] == b"{":
        return "json"
    first_line = data.lstrip()[:256].split(b"\n", 1)[0]
    if _TIKTOKEN_LINE.match(first_line):
        return "tiktoken"
    # A SentencePiece ModelProto starts with field 1 (pieces), length-delimited.
    if data[:1] == b"\x0a":
        return "sentencepiece"
    return "unknown"


def read_tokenizer_file(path: str | Path, version: int) -> tuple[Path, bytes]:
    """Read a LLaMA2/LLaMA3 tokenizer file, refusing the other kinds clearly."""
    path = Path(path)
    what = VERSION_NAME.get(version, f"version {version}")
    if not path.exists():
        raise TokenizerError(
            f"Tokenizer file not found: {path}. Expected the {what} tokenizer.model; "
            f"{DOWNLOAD_HINT.get(version, 'download it')}, or give the right path.", path=path
,
            code="tokenizer_file_not_found",
            params={"path": path, "what": what, "hint": DOWNLOAD_HINT.get(version, "download it")})
    if path.is_dir():
        raise TokenizerError(
            f"{path} is a folder; expected the {what} tokenizer.model file inside it."
,
            code="tokenizer_is_folder", params={"path": path, "what": what})
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"Cannot read tokenizer file {path}: {exc}.",
                             code="tokenizer_unreadable", params={"path": path, "error": str(exc)}) from None

    kind = sniff(data)
    want = "sentencepiece" if version == 2 else "tiktoken"
    if kind == want:
        return path, data
    other = {"sentencepiece": 2, "tiktoken": 3}.get(kind)
    if other is not None:
        raise TokenizerError(
            f"{path} looks like a {VERSION_NAME[other]} tokenizer, but it was loaded "
            f"as {what}. Choose LLaMA version {other} for this file, or give "
            f"the {what} tokenizer.model ({DOWNLOAD_HINT[version]}).", path=path, suggested_version=other
,
            code="tokenizer_other_version",
            params={"path": path, "looks_like": VERSION_NAME[other], "what": what, "other": other,
                    "hint": DOWNLOAD_HINT[version]})
    reason = {
        "empty": "it is empty (an interrupted download?)",
        "gguf": "it is a GGUF model file, not a tokenizer.model",
        "lfs-pointer": "it is a Git LFS pointer, not the real file",
        "json": "it is a JSON file (a Hugging Face tokenizer.json?), not a tokenizer.model",
    }.get(kind, "its content is not a tokenizer.model of that kind")
    raise TokenizerError(
        f"{path} cannot be used as the {what} tokenizer: {reason}. "
        f"Expected Meta's tokenizer.model; {DOWNLOAD_HINT.get(version, 'download it again')}."
,
        code="tokenizer_wrong_kind",
        params={"path": path, "what": what, "reason": reason, "hint": DOWNLOAD_HINT.get(version, "download it again")})
