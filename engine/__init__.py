"""llama-desk engine: LLaMA2/LLaMA3 checkpoints, tokenizers, chat templates, streaming generation.

This is the public API the CLI, the GUI and the tests use. Importing it does
not import MindSpore (that happens when a model is loaded), so the GUI starts fast.

    engine = load_engine(version=2, checkpoint_path="llama2_7b.ckpt", tokenizer_path="tokenizer.model")
    reply = engine.chat([{"role": "user", "content": "你好"}], GenerationSettings(), on_token=print)
"""

from .chat_engine import ChatEngine, GenerationSettings, ModelInfo
from .config import ModelConfig, load_config
from .errors import CheckpointError, ConfigError, EngineError, GenerationError, TokenizerError
from .generation import Completion, GenerationStats
from .loader import load_engine

__all__ = [
    "ChatEngine", "GenerationSettings", "ModelInfo", "ModelConfig", "load_config", "load_engine",
    "Completion", "GenerationStats",
    "EngineError", "CheckpointError", "ConfigError", "TokenizerError", "GenerationError",
]
