"""The files on the user's disk: the growing ``.part``, hashing, free space, moving bad files aside,
and a lock so that two programs never append to the same ``.part``.

A download is written to ``<name>.part`` and gets its real name only once verified, so the
engine never loads a half-written or corrupt checkpoint. Beside it, ``<name>.part.json`` says what the
``.part`` holds (the server's size and version, ETag or Last-Modified) and how much of it is known to be
on disk: a ``.part`` without it (left by another program or an older version) is not trusted, and the
last bytes written after the last fsync are fetched again (after a power cut they may be zeros).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from engine.atomic_write import write_text_atomically

from .errors import DownloadError

HASH_BLOCK = 1 << 20
SYNC_EVERY = 2 << 20  # bytes appended between two fsyncs; a resume after a crash re-fetches at most this much


def human(n: float) -> str:
    """Bytes as a person reads them: 13.5 GB, 2.1 MB, 500 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def sha256_of(path: Path, on_bytes: Callable[[int], None] | None = None,
              stop: Callable[[], None] | None = None, digest=None):
    """Hash a file in blocks; ``stop`` may raise to abandon a long hash (e.g. on cancel)."""
    digest = digest or hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            digest.update(block)
            done += len(block)
            if on_bytes:
                on_bytes(done)
            if stop:
                stop()
    return digest


def ensure_free_space(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DownloadError(f"Not enough disk space in {folder} for {what}: it needs {human(need)} more "
                            f"but only {human(free)} is free. Free some space, or download elsewhere with -o/--dest DIR.")


# Windows refuses to move, replace or delete a file that a process holds open or mapped (a loaded model).
IN_USE = ("If a model is loaded from it (in llama-desk, its local API server or another program), close that first: "
          "Windows does not let a file in use be moved or replaced.")


def move_aside(path: Path) -> Path:
    """Rename a file that failed verification to ``<name>.bad`` (replacing an older one)."""
    bad = path.with_name(path.name.removesuffix(".part") + ".bad")
    try:
        os.replace(path, bad)
    except OSError as exc:
        raise DownloadError(f"Cannot move {path} aside (to {bad.name}) to download it again: {exc.strerror or exc}. "
                            f"{IN_USE} Then run the download again.") from None
    return bad


class PartFile:
    """``<name>.part``: the bytes received so far and their running SHA-256."""

    def __init__(self, target: Path):
        self.target = target
        self.path = target.with_name(target.name + ".part")
        self.info_path = target.with_name(target.name + ".part.json")
        self.info: dict = {}          # url, size, etag, last_modified (what the server said), synced
        self.size = 0
        self.untrusted = 0            # bytes of a leftover .part discarded because nothing says what they are
        self.refetch = 0              # bytes at its end dropped because they may not have reached the disk
        self._digest = hashlib.sha256()
        self._file = None
        self._unsynced = 0

    def open(self, on_bytes: Callable[[int], None] | None = None, stop: Callable[[], None] | None = None) -> None:
        """Open for appending, hashing what an earlier run left (so resuming costs one read of it)."""
        self._digest = hashlib.sha256()
        if self.path.exists():
            self.keep_what_is_known()
            self._digest = sha256_of(self.path, on_bytes, stop)
        self._file = self._guard(lambda: open(self.path, "ab", buffering=0))  # unbuffered: on disk = counted
        self.size = self._file.tell()
        self._unsynced = 0

    def keep_what_is_known(self) -> int:
        """Cut a leftover .part to the bytes known to be the file's: none without its .part.json; else up to the
        last fsync (the whole file when it was closed cleanly, at worst SYNC_EVERY bytes less). Returns its size."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if self.info or not size:
            return size  # done already
        self.info = self._read_info()
        synced = self.info.get("synced", 0)
        if not self.info:
            keep = 0
        elif synced == size:
            keep = size
        else:  # a crash or a power cut: what came after the last fsync may be zeros on disk
            keep = max(min(synced, size), size - SYNC_EVERY, 0)
        if keep < size:
            if self.info:
                self.refetch = size - keep
            else:
                self.untrusted = size
            self._guard(lambda: os.truncate(self.path, keep))
        return keep

    def _read_info(self) -> dict:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) and isinstance(info.get("synced", 0), int) else {}

    def remember(self, **facts) -> None:
        """Keep what the server said about the file (size, version) beside the .part."""
        self.info = {**self.info, **facts, "synced": self.info.get("synced", 0)}
        self._write_info()

    def _write_info(self) -> None:
        self._guard(lambda: write_text_atomically(self.info_path, json.dumps(self.info, ensure_ascii=False)))

    def sync(self) -> None:
        """Put every byte received on the disk and note it (a pause, the end of a run)."""
        if self._file is None:
            return
        self._guard(lambda: os.fsync(self._file.fileno()))
        self._unsynced = 0
        if self.info:
            self.info["synced"] = self.size
            self._write_info()

    def discard_info(self) -> None:
        self.info = {}
        try:
            self.info_path.unlink(missing_ok=True)
        except OSError:
            pass  # a stale one is harmless: it no longer matches the .part's size

    def _guard(self, action):
        try:
            return action()
        except OSError as exc:
            raise DownloadError(f"Cannot write {self.path}: {exc.strerror or exc}. Check that the disk is not "
                                "full and the folder is writable, or download elsewhere with -o/--dest DIR.") from None

    def write(self, data: bytes) -> None:
        self._guard(lambda: self._file.write(data))
        self._digest.update(data)
        self.size += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:  # so that a power cut cannot leave more than this to doubt
            self._guard(lambda: os.fsync(self._file.fileno()))
            self._unsynced = 0

    def restart(self) -> None:
        """Discard everything received so far (and what was known about it)."""
        self._guard(lambda: (self._file.seek(0), self._file.truncate(0)))
        self._digest = hashlib.sha256()
        self.size = self._unsynced = 0
        self.discard_info()

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            try:
                self.sync()
            except DownloadError:
                pass  # not noted as synced: the next run fetches the last bytes again
            finally:
                self._file.close()
                self._file = None

    def place(self) -> Path:
        """Give the verified file its real name."""
        self.close()
        try:
            os.replace(self.path, self.target)
        except OSError as exc:
            raise DownloadError(f"Cannot give {self.path} its name {self.target.name}: {exc.strerror or exc}. "
                                f"{IN_USE} Then run the download again (it keeps what was received).") from None
        return self.target

    def reject(self) -> Path:
        self.close()
        return self._guard(lambda: move_aside(self.path))


class DownloadLock:
    """An OS lock on ``<name>.lock``: held while one program downloads a file, freed even if it is killed."""

    def __init__(self, target: Path):
        self.path = target.with_name(target.name + ".lock")
        self._file = None

    def __enter__(self) -> "DownloadLock":
        self._file = open(self.path, "a+b")
        try:
            if os.name == "nt":
                import msvcrt
                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise DownloadError(f"{self.path.name.removesuffix('.lock')} is already being downloaded into "
                                f"{self.path.parent} by another program. Wait for it to finish, or close it "
                                "and try again.") from None
        return self

    def __exit__(self, *exc) -> None:
        if os.name == "nt":
            import msvcrt
            self._file.seek(0)
            msvcrt.locking(self._file.fileno(), msvcrt.LK_UNLCK, 1)
        self._file.close()
        try:
            self.path.unlink()
        except OSError:
            pass  # another program opened it meanwhile: it is only a lock, leave it
