"""Errors a user can cause, with messages a user can act on.

The CLI and the GUI print ``str(error)`` and nothing else, so every message
names the file (when there is one), what was expected and what to do.
"""


class EngineError(Exception):
    """Base class: anything the user can fix (bad file, bad option)."""


class ConfigError(EngineError):
    """A yaml config is missing, unreadable or has an invalid value."""


class CheckpointError(EngineError):
    """A checkpoint is missing, truncated, corrupt or does not fit the config."""


class TokenizerError(EngineError):
    """A tokenizer file is missing, unreadable or does not fit the model."""


class GenerationError(EngineError):
    """A prompt or generation setting cannot be honoured (empty, too long...)."""
