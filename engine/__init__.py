"""llama-desk engine: LLaMA2/LLaMA3 checkpoints, tokenizers, chat templates, streaming generation.

This is the public API the CLI, the GUI, the API server and the tests use.
Importing it is cheap: the names below load their modules on first use, and
neither MindSpore nor the JIT compiler is imported until a model is loaded,
so the GUI paints its window before any of that.

    engine = load_engine(ModelSource(version=2, checkpoint="llama2_7b.ckpt", tokenizer="tokenizer.model"),
                         ExecutorOptions(weight_format="int8"))
    reply = engine.chat([{"role": "user", "content": "你好"}], GenerationSettings(), on_token=print)

Threads: a loaded engine serves one request at a time (a lock), from any
thread. MindSpore (the mindspore and mindformers backends) binds itself to the
first Python thread state it sees in a thread, so call those backends from
long-lived threads (a Qt worker should run its loop from Python's ``run()``).
"""

from importlib import import_module

from .errors import (Cancelled, CheckpointError, ConfigError, ContextOverflow, EngineBusy, EngineError,
                     GenerationError, TokenizerError)

_LAZY = {
    "backend_names": ".backends.registry", "ExecutorOptions": ".backends.registry",
    "ModelSource": ".loader", "ChatEngine": ".generation.chat_engine",
    "ChatPrompt": ".generation.chat_engine", "GenerationSettings": ".generation.chat_engine",
    "ModelInfo": ".generation.chat_engine", "ModelConfig": ".config", "load_config": ".config",
    "Completion": ".generation.loop", "GenerationStats": ".generation.loop",
    "check_model_files": ".loader", "estimate_memory": ".loader", "load_engine": ".loader",
    "verify_checkpoint": ".loader", "available_bytes": ".memory", "current_rss_bytes": ".memory",
}

__all__ = sorted(_LAZY) + ["EngineError", "CheckpointError", "ConfigError", "TokenizerError", "GenerationError",
                           "ContextOverflow", "Cancelled", "EngineBusy"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
