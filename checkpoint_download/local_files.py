"""The files on the user's disk: the growing ``.part``, hashing, free space, moving bad files aside,
and a lock so that two programs never append to the same ``.part``.

A download is written to ``<name>.part`` and gets its real name only once verified, so the
engine never loads a half-written or corrupt checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

from .errors import DownloadError

HASH_BLOCK = 1 << 20


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
        self.size = 0
        self._digest = hashlib.sha256()
        self._file = None

    def open(self, on_bytes: Callable[[int], None] | None = None, stop: Callable[[], None] | None = None) -> None:
        """Open for appending, hashing what an earlier run left (so resuming costs one read of it)."""
        self._digest = hashlib.sha256()
        if self.path.exists():
            self._digest = sha256_of(self.path, on_bytes, stop)
        self._file = self._guard(lambda: open(self.path, "ab", buffering=0))  # unbuffered: on disk = counted
        self.size = self._file.tell()

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

    def restart(self) -> None:
        """Discard everything received so far."""
        self._guard(lambda: (self._file.seek(0), self._file.truncate(0)))
        self._digest = hashlib.sha256()
        self.size = 0

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._file is not None:
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
