"""llama-desk engine: LLaMA2/LLaMA3 checkpoints, tokenizers, chat templates, streaming generation.

This is the public API the CLI, the GUI, the API server and the tests use.
Importing it imports neither MindSpore nor the JIT compiler (that happens when
a model is loaded), so the GUI starts fast.

    engine = load_engine(version=2, checkpoint_path="llama2_7b.ckpt", tokenizer_path="tokenizer.model")
    reply = engine.chat([{"role": "user", "content": "你好"}], GenerationSettings(), on_token=print)
"""

from .backends import backend_names
from .chat_engine import ChatEngine, ChatPrompt, GenerationSettings, ModelInfo
from .config import ModelConfig, load_config
from .errors import (Cancelled, CheckpointError, ConfigError, ContextOverflow, EngineBusy, EngineError,
                     GenerationError, TokenizerError)
from .generation import Completion, GenerationStats
from .loader import check_model_files, load_engine, verify_checkpoint
from .memory import available_bytes, current_rss_bytes

__all__ = [
    "ChatEngine", "ChatPrompt", "GenerationSettings", "ModelInfo", "ModelConfig", "load_config", "load_engine",
    "check_model_files", "verify_checkpoint", "backend_names", "available_bytes", "current_rss_bytes",
    "Completion", "GenerationStats",
    "EngineError", "CheckpointError", "ConfigError", "TokenizerError", "GenerationError", "ContextOverflow",
    "Cancelled", "EngineBusy",
]
