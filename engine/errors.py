"""Errors a user can cause, with messages a user can act on.

The CLI and the GUI print ``str(error)``, so every message names the file
(when there is one), what was expected and what to do, in terms of files and
choices, never of one front end's flags or buttons. Each front end adds its own
hint from the structured fields: ``subject`` (which input is wrong: "checkpoint",
"tokenizer", "config", "version", "memory", "weights", "settings"), ``path``,
``suggested_version`` (the file looks like LLaMA2/3) and ``suggested_format``
(a weight format that would fit in memory).

Each message also carries a ``code`` naming it ("checkpoint_not_found") and the ``params`` its text
was made from ({"path": ..., "version": 2}), so a front end in another language words it anew (the
desktop app's Chinese UI); the English text stays the engine's own, for the CLI and the logs.
"""

from __future__ import annotations

from pathlib import Path


class EngineError(Exception):
    """Base class: anything the user can fix (bad file, bad option)."""

    default_subject: str | None = None

    def __init__(self, message: str, *, subject: str | None = None, path: str | Path | None = None,
                 suggested_version: int | None = None, suggested_format: str | None = None,
                 code: str | None = None, params: dict | None = None):
        super().__init__(message)
        self.code = code
        self.params = dict(params or {})
        self.subject = subject or self.default_subject
        self.path = Path(path) if path is not None else None
        self.suggested_version = suggested_version
        self.suggested_format = suggested_format


class ConfigError(EngineError):
    """A yaml config is missing, unreadable or has an invalid value."""

    default_subject = "config"


class CheckpointError(EngineError):
    """A checkpoint is missing, truncated, corrupt, damaged or does not fit the config."""

    default_subject = "checkpoint"


class TokenizerError(EngineError):
    """A tokenizer file is missing, unreadable or does not fit the model."""

    default_subject = "tokenizer"


class GenerationError(EngineError):
    """A prompt or generation setting cannot be honoured (empty, too long, out of range...)."""

    default_subject = "settings"


class ContextOverflow(GenerationError):
    """A prompt does not fit the model's context: ``tokens`` needed, ``limit`` available."""

    def __init__(self, message: str, *, tokens: int, limit: int, **kw):
        super().__init__(message, **kw)
        self.tokens = tokens
        self.limit = limit


class Cancelled(EngineError):
    """The user stopped a long operation (loading, verifying) before it finished."""


class EngineBusy(EngineError):
    """Another request is using the model and the caller asked not to wait."""


def quote(text: str | bytes, limit: int = 60) -> str:
    """A file's content, safe to put in a message: escaped, and cut at ``limit`` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")
