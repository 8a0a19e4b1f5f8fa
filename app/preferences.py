"""The app's own settings: which model to run, look and language, default generation settings.

One small JSON file in the user-data folder, read once at start (it is tiny: no thread needed) and
written atomically, so a crash mid-write leaves the previous file. Paths are kept as text, UTF-8,
so folders with Chinese names round-trip.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.generation.lookup import MODES as LOOKUP_MODES
from engine.paths import SETTINGS_FILE

from .atomic_write import write_text_atomically

SOURCES = ("builtin", "llama2", "llama3")
THEMES = ("system", "light", "dark")
LANGUAGES = ("", "en", "zh_CN")          # "": follow the system
WEIGHT_FORMATS = ("auto", "int8", "int4")
# Answers the model computes at once while the local API server is on (the app's chat among them): each needs
# a KV cache of its own, so more cost memory; 2 is --serve's default.
API_STREAMS = 2


@dataclass
class ModelChoice:
    """What to load: the built-in model or LLaMA2/3 files, and how to run it."""

    source: str = "builtin"
    checkpoint: str = ""                 # "": where the download scripts put it
    tokenizer: str = ""
    config: str = ""
    backend: str = "auto"
    weight_format: str = "auto"          # "auto" (as stored), "int8" or "int4"
    threads: int = 0                     # 0: one per physical core
    context_length: int = 0              # 0: the model's own; less saves memory (and drops old turns sooner)
    template: str = "auto"               # chat format: "auto" (the model's own; base models: a transcript),
    #                                      "llama2", "llama3", "chatml", "base" (another: the engine refuses it)

    @property
    def version(self) -> int | None:
        return {"llama2": 2, "llama3": 3}.get(self.source)

    def model_source(self):
        """The engine's ``ModelSource`` for ``load_engine`` / ``check_model_files`` ("" and 0 mean the default)."""
        from engine import ModelSource
        if self.source == "builtin":
            return ModelSource(builtin=True, template=self.template)
        return ModelSource(version=self.version, checkpoint=self.checkpoint or None, tokenizer=self.tokenizer or None,
                           config=self.config or None, template=self.template)

    def run_options(self, parallel: int = 1, weight_cache_gb: float | None = None):
        """The engine's ``ExecutorOptions`` (0 threads or context: the default); ``parallel``: answers computed
        together (a KV cache each: the app's chat beside the local API's clients); ``weight_cache_gb``: the
        size limit of the quantized weights kept on disk (Settings > General)."""
        from engine import ExecutorOptions
        return ExecutorOptions(backend=self.backend, weight_format=self.weight_format, threads=self.threads or None,
                               max_seq_len=self.context_length or None, parallel=parallel,
                               weight_cache_gb=weight_cache_gb)


@dataclass
class ChatDefaults:
    """Generation settings a new conversation starts with (each conversation may override them)."""

    system_prompt: str = ""              # "": the model's own default
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    max_new_tokens: int = 512
    seed: int | None = None
    lookup: str = "auto"                 # lookup decoding: "auto" (while it pays), "on", "off"


@dataclass
class Preferences:
    model: ModelChoice = field(default_factory=ModelChoice)
    chat: ChatDefaults = field(default_factory=ChatDefaults)
    theme: str = "system"
    language: str = ""
    api_server: bool = False
    api_port: int = 8080
    api_key: str = ""                    # "": none; else other programs send it (Authorization: Bearer KEY)
    api_streams: int = API_STREAMS       # answers at once while serving (1-4), applied when a model loads
    setup_done: bool = False             # the first-run dialog was answered
    last_conversation: str = ""          # the conversation shown at exit, shown again at the next start
    added_models: list = field(default_factory=list)   # models added by their files: {"name", "choice": {...}}
    saved_states_gb: float = 4.0         # conversation states kept on disk (reopened chats resume at once)
    quantized_weights_gb: float = 16.0   # 8-/4-bit weights kept on disk (the next load skips quantizing)

    @property
    def saved_states_bytes(self) -> int:
        return int(max(self.saved_states_gb, 0) * 1e9)


# What a hand-edited file must hold for each annotated type; anything else falls back to the default
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "int | None": (int, type(None)),
          "list": (list,)}
_RANGES = {"api_port": (1024, 65535), "api_streams": (1, 4), "threads": (0, 1024), "context_length": (0, 1 << 20),
           "temperature": (0, 2), "top_k": (0, 1000), "top_p": (0.01, 1), "repetition_penalty": (0.5, 2),
           "max_new_tokens": (1, 32768), "seed": (0, 2 ** 31 - 1),
           "saved_states_gb": (0, 1000), "quantized_weights_gb": (0, 1000)}     # (the ranges Settings offers)


def _valid(f, value) -> bool:
    allowed = _TYPES.get(f.type)
    if allowed is None:
        return True                       # nested settings: checked on their own
    if isinstance(value, bool) and bool not in allowed:
        return False                      # true/false is no number
    if not isinstance(value, allowed):
        return False
    low, high = _RANGES.get(f.name, (None, None))
    return value is None or low is None or low <= value <= high


def _known(cls, data) -> dict:
    """Fields of ``cls`` found in ``data`` with a usable value: a file from another version, or edited by
    hand, still loads (a wrong value is replaced by the default, never passed on to a widget)."""
    if not isinstance(data, dict):
        return {}
    return {f.name: data[f.name] for f in fields(cls) if f.name in data and _valid(f, data[f.name])}


def preferences_path(folder: Path) -> Path:
    return Path(folder) / SETTINGS_FILE


def load_preferences(folder: Path) -> Preferences:
    """The saved settings, or defaults when there are none or the file is unreadable."""
    try:
        data = json.loads(preferences_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Preferences()
    if not isinstance(data, dict):
        return Preferences()
    prefs = Preferences(**{k: v for k, v in _known(Preferences, data).items() if k not in ("model", "chat")})
    prefs.model = ModelChoice(**_known(ModelChoice, data.get("model")))
    prefs.chat = ChatDefaults(**_known(ChatDefaults, data.get("chat")))
    if prefs.model.source not in SOURCES:
        prefs.model = ModelChoice()
    prefs.added_models = [a for a in prefs.added_models if isinstance(a, dict)]
    if prefs.model.weight_format not in WEIGHT_FORMATS:
        prefs.model.weight_format = "auto"
    if prefs.theme not in THEMES:
        prefs.theme = "system"
    if prefs.language not in LANGUAGES:
        prefs.language = ""
    if prefs.chat.lookup not in LOOKUP_MODES:
        prefs.chat.lookup = ChatDefaults.lookup
    return prefs


def save_preferences(prefs: Preferences, folder: Path) -> None:
    """Raises OSError with a message a user can act on when the file cannot be written."""
    write_text_atomically(preferences_path(folder), json.dumps(asdict(prefs), ensure_ascii=False, indent=2))


GENERATION_FIELDS = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens", "seed", "lookup")


def generation_values(defaults: ChatDefaults, overrides: dict) -> dict:
    """A conversation's generation settings: its own overrides over the app's defaults."""
    values = {name: getattr(defaults, name) for name in GENERATION_FIELDS}
    values.update({k: v for k, v in (overrides or {}).items() if k in GENERATION_FIELDS})
    return values
