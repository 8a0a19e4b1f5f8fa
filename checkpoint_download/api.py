"""The calls the command line and the desktop app make: download a model, fetch one file, report status.

All of them block; the app runs them on a worker thread and pauses or cancels them by setting
``threading.Event``s from its own thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests

from .answers import file_name_of
from .errors import DownloadError
from .fetcher import GIVEN, FileFetcher, RetryPolicy
from .local_files import ensure_free_space
from .manifest import MANIFEST, FileSpec, ModelSpec, check_sha256, get_model, load_models, resolve_url
from .progress import ProgressCallback
from .records import Records


def _make_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"Cannot create the folder {folder}: {exc.strerror or exc}. "
                            "Choose another one with -o/--dest DIR.") from None
    return folder


def _bytes_still_needed(spec: FileSpec, folder: Path) -> int:
    """What is left to download of a file whose size is known (0 when the size is not)."""
    record = Records(folder).get(spec.name)
    size = spec.size or (record.size if record and not spec.sha256 else None)
    target, part = folder / spec.name, folder / (spec.name + ".part")
    if size is None or (target.is_file() and target.stat().st_size == size):
        return 0
    return max(size - (part.stat().st_size if part.is_file() else 0), 0)


def download_model(model_name: str, dest: str | Path | None = None, progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None, pause: threading.Event | None = None, *,
                   extra_mirrors: dict[str, Sequence[str]] | None = None, retry: RetryPolicy = RetryPolicy(),
                   manifest: Path = MANIFEST) -> list[Path]:
    """Download, verify and place every file of ``model_name``; returns their paths in manifest order.

    ``dest`` defaults to the model's folder in the models folder (``engine.paths``), where the engine looks.
    ``extra_mirrors`` maps a file name to addresses tried before the manifest's own.
    Raises ``DownloadError`` (``DownloadCancelled`` on cancel) with one line for the user.
    """
    model = get_model(model_name, manifest)
    folder = _make_folder(Path(dest) if dest else model.folder)
    specs = [FileSpec(s.name, tuple((extra_mirrors or {}).get(s.name, ())) + s.mirrors, s.size, s.sha256)
             for s in model.files]
    need = sum(_bytes_still_needed(s, folder) for s in specs)
    if need:
        ensure_free_space(folder, need, f"{model.name} ({len(specs)} files)")
    with requests.Session() as session:
        return [FileFetcher(spec, folder, progress=progress, cancel=cancel, pause=pause, retry=retry,
                            session=session).run() for spec in specs]


def fetch(urls: Sequence[str], path: str | Path, sha256: str | None = None,
          progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
          pause: threading.Event | None = None, *, size: int | None = None,
          retry: RetryPolicy = RetryPolicy()) -> Path:
    """Fetch one file from ``urls`` (mirrors, tried in order) to ``path``, checking ``sha256`` when given."""
    if not urls:
        raise DownloadError("Give at least one address to download from.")
    path = Path(path)
    if path.is_dir():
        path = path / file_name_of(resolve_url(urls[0]))
    spec = FileSpec(path.name, tuple(urls), size, check_sha256(sha256, "--sha256"))
    with requests.Session() as session:
        return FileFetcher(spec, _make_folder(path.parent), progress=progress, cancel=cancel, pause=pause,
                           retry=retry, session=session, record=False, checksum_source=GIVEN).run()


@dataclass(frozen=True)
class FileStatus:
    name: str
    path: Path
    size: int | None      # expected size: published or recorded
    checksum: str         # "published", "recorded <date>" or "none yet"
    state: str            # "present", "wrong size", "partial", "missing"
    have_bytes: int       # bytes on disk (of the file, or of its .part)


def model_status(model: ModelSpec, dest: str | Path | None = None) -> list[FileStatus]:
    """What is on disk for each file, without hashing (``download_model`` re-checks hashes)."""
    folder = Path(dest) if dest else model.folder
    records, out = Records(folder), []
    for spec in model.files:
        record = records.get(spec.name)
        size = spec.size or (record.size if record else None)
        checksum = ("published" if spec.sha256 else f"recorded {record.recorded}" if record else "none yet")
        target, part = folder / spec.name, folder / (spec.name + ".part")
        if target.is_file():
            have = target.stat().st_size
            state = "present" if size is None or have == size else "wrong size"
        elif part.is_file():
            have, state = part.stat().st_size, "partial"
        else:
            have, state = 0, "missing"
        out.append(FileStatus(spec.name, target, size, checksum, state, have))
    return out


def list_models(manifest: Path = MANIFEST) -> list[ModelSpec]:
    return list(load_models(manifest).values())
