"""The models that can be downloaded, read from models.yaml, with mirror addresses made concrete.

Hugging Face mirrors are written ``hf://<org>/<repo>/<path>`` in the manifest so that the
endpoint is chosen when downloading: ``HF_ENDPOINT`` (e.g. https://hf-mirror.com for users in
China) or https://huggingface.co.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from engine.paths import models_dir

from .errors import DownloadError

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "models.yaml"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: its name on disk, what is known about it, and where it can be had."""
    name: str
    mirrors: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None


KINDS = ("chat", "base")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    folder_name: str  # its folder in the models folder
    files: tuple[FileSpec, ...]
    kind: str = ""    # "chat" (chat/instruct-tuned) or "base" (pre-trained only: continues text); "": unknown

    @property
    def folder(self) -> Path:
        """Where it goes by default: in the models folder that ``engine.paths`` owns (the app's choice,
        ``LLAMA_DESK_MODELS_DIR``, else the default of a source checkout or an installed copy)."""
        return models_dir() / self.folder_name


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def resolve_url(url: str) -> str:
    """The address to request for a manifest mirror (expands ``hf://``)."""
    if not url.startswith("hf://"):
        return url
    parts = url[len("hf://"):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise DownloadError(f"Bad Hugging Face address {url!r}: write hf://<org>/<repo>/<path in the repo>.")
    org, repo, path = parts
    return f"{hf_endpoint()}/{org}/{repo}/resolve/main/{path}"


def auth_headers(url: str) -> dict[str, str]:
    """The Hugging Face token, sent only to the Hugging Face endpoint (gated repositories need it)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token and urlsplit(url).netloc == urlsplit(hf_endpoint()).netloc:
        return {"Authorization": f"Bearer {token}"}
    return {}


def is_hugging_face(url: str) -> bool:
    return urlsplit(url).netloc in (urlsplit(hf_endpoint()).netloc, urlsplit(HF_DEFAULT_ENDPOINT).netloc)


def check_sha256(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    value = str(value).strip().lower()
    if not _SHA256.match(value):
        raise DownloadError(f"{where}: {value!r} is not a SHA-256 (64 hexadecimal characters).")
    return value


def _file_spec(entry: dict, where: str) -> FileSpec:
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("mirrors"):
        raise DownloadError(f"{where}: every file needs a name and at least one mirror.")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise DownloadError(f"{where}: size of {entry['name']} must be a positive number of bytes.")
    return FileSpec(name=str(entry["name"]), mirrors=tuple(str(m) for m in entry["mirrors"]),
                    size=size, sha256=check_sha256(entry.get("sha256"), f"{where}: {entry['name']}"))


def load_models(path: Path = MANIFEST) -> dict[str, ModelSpec]:
    """Every model in the manifest, by name, in the manifest's order."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DownloadError(f"Cannot read the model list {path}: {exc}") from None
    models = {}
    for name, body in (doc or {}).get("models", {}).items():
        where = f"{Path(path).name}, model {name}"
        files = tuple(_file_spec(entry, where) for entry in body.get("files", []))
        kind = str(body.get("kind", ""))
        if kind and kind not in KINDS:
            raise DownloadError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}.")
        models[name] = ModelSpec(name=name, description=body.get("description", ""),
                                 folder_name=str(body.get("folder", name)), files=files, kind=kind)
    return models


def get_model(name: str, path: Path = MANIFEST) -> ModelSpec:
    models = load_models(path)
    if name not in models:
        raise DownloadError(f"Unknown model {name!r}. Choose one of: {', '.join(models)} "
                            "(python -m checkpoint_download list shows them).")
    return models[name]
