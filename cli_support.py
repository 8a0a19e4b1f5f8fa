"""What the command lines share: UTF-8 console streams, the model their -V/-C/-F/-M flags name, and engine
errors turned into one line with flag hints.

The engine's messages talk about files and choices; only here do they learn
this front end's spelling of them (-M, -F, -C, -V, --quantize, the download
script for this platform).
"""

from __future__ import annotations

import sys

from engine import EngineError, ModelSource
from engine.paths import default_model_files

_FLAG = {"checkpoint": "-M", "tokenizer": "-F", "config": "-C"}
# The engine names a bad setting by its API field; a command-line user typed the flag.
_SETTING_FLAG = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_k": "--top-k",
                 "top_p": "--top-p", "repetition_penalty": "--repetition-penalty", "seed": "--seed",
                 "stop_strings": "--stop", "threads": "--threads"}


def model_source(args, *, builtin: bool | None = None, need_tokenizer: bool = True) -> ModelSource:
    """The files named by the flags the command lines share: -V, -C, -F, -M, and --fast/--builtin/--template
    where a command has them (``builtin`` overrides the latter)."""
    return ModelSource(version=args.version, config=args.config, tokenizer=getattr(args, "tokenizer", None),
                       checkpoint=args.model, builtin=getattr(args, "builtin", False) if builtin is None else builtin,
                       fast_tokenizer=getattr(args, "fast", False), need_tokenizer=need_tokenizer,
                       template=getattr(args, "template", "auto"))


def utf8_stdio() -> None:
    """Windows consoles/pipes default to a legacy code page; Chinese text needs UTF-8. Bad input bytes become U+FFFD."""
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")


def hint(exc: EngineError, version: int | None = None) -> str:
    """This command line's advice for an engine error, or ''."""
    parts = []
    if exc.suggested_version:
        v = exc.suggested_version
        yaml_name = "predict_llama2_7b.yaml" if v == 2 else "predict_llama3_8b.yaml"
        parts.append(f"use -V {v}" + (f" -C configs/{yaml_name}" if exc.subject == "checkpoint" else ""))
    if exc.suggested_format == "int8":
        parts.append("use --quantize int8")
    if exc.subject == "weights":
        parts.append("run with --verify to list damaged tensors")
    if exc.subject in _FLAG and exc.path is not None and not exc.path.exists():
        flag = _FLAG[exc.subject]
        where = f"pass the right path with {flag}"
        if version in (2, 3) and exc.subject in ("checkpoint", "tokenizer"):
            where += f", or download the files with {default_model_files(version)['download_script']}"
        parts.append(where)
    return ("; ".join(parts)).join(("(", ")")) if parts else ""


def flag_spelling(exc: EngineError) -> str:
    """The message, with a setting's API name at its start replaced by the flag that sets it."""
    text = str(exc)
    if exc.subject == "settings":
        field = text.split(" ", 1)[0]
        if field in _SETTING_FLAG:
            return _SETTING_FLAG[field] + text[len(field):]
    return text


def report(exc: EngineError, version: int | None = None) -> int:
    """Print the error as one line (plus this front end's hint) and return the exit code 2."""
    extra = hint(exc, version)
    print(f"error: {flag_spelling(exc)}" + (f" {extra}" if extra else ""), file=sys.stderr)
    return 2
