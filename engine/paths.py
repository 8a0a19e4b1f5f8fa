"""Every folder and file llama-desk keeps, decided here and nowhere else (as Ollama's envconfig owns its paths).

- The user-data folder: %LOCALAPPDATA%\\llama-desk on Windows, ~/Library/Application Support/llama-desk
  on macOS, $XDG_DATA_HOME/llama-desk elsewhere; ``LLAMA_DESK_HOME`` overrides them (tests, portable use).
  What we write there is listed in ``OUR_FILES``/``OUR_FOLDERS`` (small or re-made on demand: what an
  uninstall with "remove data" deletes) and ``DOWNLOAD_FOLDERS`` (the user's 13-30 GB of checkpoints, kept
  apart so that only a choice of its own deletes them).
- The models folder, where downloads go and where the command lines and the app look first: the user's
  choice (``choose_models_dir``, kept in its own small file in the user-data folder), else
  ``checkpoint_download/`` in a source checkout (where the MindFormers tutorials' users look), else
  ``<user data>/checkpoints`` in an installed copy (its own folder may be read-only, and an upgrade replaces
  it). ``LLAMA_DESK_MODELS_DIR`` overrides all of them.

Standard library only and cheap to import: the app reads it before its first paint, and the Windows
installer's build generates its data-removal list from it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

APP_FOLDER = "llama-desk"
HOME_ENV = "LLAMA_DESK_HOME"
MODELS_ENV = "LLAMA_DESK_MODELS_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# What llama-desk writes in the user-data folder.
HISTORY_FILE = "chats.sqlite3"             # the conversations (SQLite; -wal and -shm beside it)
SETTINGS_FILE = "settings.json"            # the app's preferences
MODELS_CHOICE_FILE = "models_folder.json"  # the models folder the user chose
VERIFIED_FILE = "verified_checkpoints.json"  # checkpoints whose CRC passed (so it is not re-read)
INSTANCE_LOCK_FILE = "app.lock"           # held by the running app: one copy per user-data folder
LOGS_FOLDER = "logs"
CRASH_LOG = "crash.log"                    # in LOGS_FOLDER: Python's trace of a native crash (pythonw has no console)
JIT_CACHE_FOLDER = "jit-cache"             # compiled CPU kernels
CONVERTED_FOLDER = "models"                # the built-in model, converted from its GGUF
PROMPT_STATES_FOLDER = "prompt-states"     # saved conversation states (KV caches), within a size limit
QUANTIZED_FOLDER = "quantized-weights"     # int8/int4 copies of checkpoints made at load, within a size limit
DOWNLOADS_FOLDER = "checkpoints"           # an installed copy's default models folder
OUR_FILES = (HISTORY_FILE, HISTORY_FILE + "-wal", HISTORY_FILE + "-shm", SETTINGS_FILE, MODELS_CHOICE_FILE,
             VERIFIED_FILE, INSTANCE_LOCK_FILE)
OUR_FOLDERS = (LOGS_FOLDER, JIT_CACHE_FOLDER, CONVERTED_FOLDER, PROMPT_STATES_FOLDER, QUANTIZED_FOLDER)
DOWNLOAD_FOLDERS = (DOWNLOADS_FOLDER,)

# Windows: the named mutex the running app holds, so the installer can tell it is running before it
# upgrades or uninstalls (session-local: each user's own copy).
APP_RUNNING_MUTEX = "llama-desk-app-running"


def user_data_dir(create: bool = True) -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        base = Path(override)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / APP_FOLDER
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / APP_FOLDER
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP_FOLDER
    if create:
        base.mkdir(parents=True, exist_ok=True)
    return base


def logs_dir(part: str | None = None) -> Path:
    """``<user data>/logs``, or the folder of one component's logs (``mindspore``, ``mindformers``) in it."""
    folder = user_data_dir() / LOGS_FOLDER
    return folder / part if part else folder


def jit_cache_dir() -> Path:
    return user_data_dir() / JIT_CACHE_FOLDER


def converted_models_dir() -> Path:
    return user_data_dir() / CONVERTED_FOLDER


def prompt_states_dir() -> Path:
    """Where the app keeps one saved state (KV cache) per conversation and model."""
    return user_data_dir() / PROMPT_STATES_FOLDER


def quantized_weights_dir() -> Path:
    """Where the cpu backend keeps the 8-/4-bit copies it made, so the next load reads them instead."""
    return user_data_dir() / QUANTIZED_FOLDER


def verified_record() -> Path:
    return user_data_dir() / VERIFIED_FILE


def is_source_checkout() -> bool:
    """Running from the project's folder (a clone, or an editable install), not an installed copy."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "checkpoint_download").is_dir()


def default_models_dir() -> Path:
    """The models folder when the user has chosen none."""
    if is_source_checkout():
        return PROJECT_ROOT / "checkpoint_download"
    return user_data_dir(create=False) / DOWNLOADS_FOLDER


def chosen_models_dir() -> Path | None:
    """The models folder the user chose (None: none, or its file cannot be read)."""
    try:
        folder = json.loads((user_data_dir(create=False) / MODELS_CHOICE_FILE).read_text(encoding="utf-8"))["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(folder) if isinstance(folder, str) and folder else None


def choose_models_dir(folder: str | Path | None) -> None:
    """Keep ``folder`` as the models folder (created if needed); None goes back to the default.

    Raises OSError with the reason when the folder cannot be created; the old choice then stays.
    """
    path = user_data_dir() / MODELS_CHOICE_FILE
    if folder is None or str(folder).strip() == "":
        path.unlink(missing_ok=True)
        return
    from .atomic_write import write_text_atomically  # here: the app imports this module before its first paint

    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps({"folder": str(folder)}, ensure_ascii=False))


def models_dir() -> Path:
    """Where downloaded models live: ``LLAMA_DESK_MODELS_DIR``, else the user's choice, else the default."""
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    return chosen_models_dir() or default_models_dir()


def default_model_files(version: int, models_folder: str | Path | None = None) -> dict[str, Path]:
    """The paths the downloader writes to, which the command lines and the app default to.

    ``models_folder``: look there instead of ``models_dir()`` (the app's chooser, before it is saved).
    """
    folder = Path(models_folder or models_dir()) / f"llama{version}"
    ckpt = "llama2_7b.ckpt" if version == 2 else "llama3-8B.ckpt"
    yaml_name = "predict_llama2_7b.yaml" if version == 2 else "predict_llama3_8b.yaml"
    return {"checkpoint": folder / ckpt, "tokenizer": folder / "tokenizer.model",
            "config": PROJECT_ROOT / "configs" / yaml_name,
            "download_script": PROJECT_ROOT / "checkpoint_download" / f"llama{version}"
            / ("download.cmd" if os.name == "nt" else "download.sh")}


def data_layout() -> dict:
    """The user-data folder and what is ours in it, for the installer's uninstall (JSON-ready)."""
    return {"user_data": str(user_data_dir(create=False)), "our_files": list(OUR_FILES),
            "our_folders": list(OUR_FOLDERS), "download_folders": list(DOWNLOAD_FOLDERS)}
