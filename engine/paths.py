"""Where llama-desk keeps its own files (converted models, chats, settings).

Windows: %LOCALAPPDATA%\\llama-desk; macOS: ~/Library/Application Support/llama-desk;
elsewhere $XDG_DATA_HOME/llama-desk. ``LLAMA_DESK_HOME`` overrides all of them
(tests and portable installs use it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def user_data_dir() -> Path:
    override = os.environ.get("LLAMA_DESK_HOME")
    if override:
        base = Path(override)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "llama-desk"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "llama-desk"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "llama-desk"
    base.mkdir(parents=True, exist_ok=True)
    return base


def models_dir() -> Path:
    """Where downloaded models live: ``checkpoint_download/`` in a source checkout (what the MindFormers
    tutorials' users expect), else ``<user data>/models`` (an installed program's folder may be
    read-only, and uninstalling it must not delete 15 GB of downloads). ``LLAMA_DESK_MODELS_DIR``
    overrides both."""
    override = os.environ.get("LLAMA_DESK_MODELS_DIR")
    if override:
        return Path(override)
    if (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "checkpoint_download").is_dir():
        return PROJECT_ROOT / "checkpoint_download"
    return user_data_dir() / "models"


def default_model_files(version: int) -> dict[str, Path]:
    """The paths the download scripts write to, which the command lines default to.

    See ``models_dir`` for where the model folders (``llama2``, ``llama3``) are.
    """
    folder = models_dir() / f"llama{version}"
    ckpt = "llama2_7b.ckpt" if version == 2 else "llama3-8B.ckpt"
    yaml_name = "predict_llama2_7b.yaml" if version == 2 else "predict_llama3_8b.yaml"
    return {"checkpoint": folder / ckpt, "tokenizer": folder / "tokenizer.model",
            "config": PROJECT_ROOT / "configs" / yaml_name,
            "download_script": PROJECT_ROOT / "checkpoint_download" / f"llama{version}"
            / ("download.cmd" if os.name == "nt" else "download.sh")}
