"""The app's own settings: which model to run, look and language, default generation settings.

One small JSON file in the user-data folder, read once at start (it is tiny: no thread needed) and
written atomically, so a crash mid-write leaves the previous file. Paths are kept as text, UTF-8,
so folders with Chinese names round-trip.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.generation.lookup import MODES as LOOKUP_MODES
from engine.paths import SETTINGS_FILE

SOURCES = ("builtin", "llama2", "llama3")
THEMES = ("system", "light", "dark")
LANGUAGES = ("", "en", "zh_CN")          # "": follow the system


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

    def run_options(self):
        """The engine's ``ExecutorOptions`` (0 threads or context: the default)."""
        from engine import ExecutorOptions
        return ExecutorOptions(backend=self.backend, weight_format=self.weight_format, threads=self.threads or None,
                               max_seq_len=self.context_length or None)


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
    setup_done: bool = False             # the first-run dialog was answered
    saved_states_gb: float = 4.0         # conversation states kept on disk (reopened chats resume at once)

    @property
    def saved_states_bytes(self) -> int:
        return int(max(self.saved_states_gb, 0) * 1e9)


def _known(cls, data) -> dict:
    """Fields of ``cls`` found in ``data``: a file from an older or newer version still loads."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in (data or {}).items() if k in names} if isinstance(data, dict) else {}


def preferences_path(folder: Path) -> Path:
    return Path(folder) / SETTINGS_FILE


def load_preferences(folder: Path) -> Preferences:
    """The saved settings, or defaults when there are none or the file is unreadable."""
    try:
        data = json.loads(preferences_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Preferences()
    prefs = Preferences(**{k: v for k, v in _known(Preferences, data).items() if k not in ("model", "chat")})
    prefs.model = ModelChoice(**_known(ModelChoice, data.get("model")))
    prefs.chat = ChatDefaults(**_known(ChatDefaults, data.get("chat")))
    if prefs.model.source not in SOURCES:
        prefs.model = ModelChoice()
    if prefs.theme not in THEMES:
        prefs.theme = "system"
    if prefs.language not in LANGUAGES:
        prefs.language = ""
    if prefs.chat.lookup not in LOOKUP_MODES:
        prefs.chat.lookup = ChatDefaults.lookup
    if isinstance(prefs.saved_states_gb, bool) or not isinstance(prefs.saved_states_gb, (int, float)):
        prefs.saved_states_gb = Preferences.saved_states_gb
    return prefs


def save_preferences(prefs: Preferences, folder: Path) -> None:
    path = preferences_path(folder)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(prefs), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


GENERATION_FIELDS = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens", "seed", "lookup")


def generation_values(defaults: ChatDefaults, overrides: dict) -> dict:
    """A conversation's generation settings: its own overrides over the app's defaults."""
    values = {name: getattr(defaults, name) for name in GENERATION_FIELDS}
    values.update({k: v for k, v in (overrides or {}).items() if k in GENERATION_FIELDS})
    return values
