"""Files a folder keeps within a size limit (saved conversation states, quantized weights): list, size, evict.

Both folders hold files that are slow to make and safe to lose: beyond the limit the least recently used go
first, a file another program holds open (Windows) stays until the next time, and a temporary file left by a
writer that was killed is removed once it is old enough that no live writer can own it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def kept_files(folder: Path, suffix: str) -> list[tuple[Path, int, float]]:
    """(path, size, modification time) of each file named ``*suffix`` in ``folder``; none if it does not exist."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name.endswith(suffix) and entry.is_file():
            try:
                st = entry.stat()
            except OSError:
                continue
            found.append((Path(entry.path), st.st_size, st.st_mtime))
    return found


def kept_size(folder: Path, suffix: str) -> int:
    """Bytes the kept files take."""
    return sum(size for _, size, _ in kept_files(folder, suffix))


def remove_kept(paths) -> int:
    """Delete these files (one held open elsewhere stays, with a warning); how many were deleted."""
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except OSError as exc:
            log.warning("cannot delete %s: %s", path, exc)
    return removed


def evict_least_recent(folder: Path, suffix: str, budget: int, keep=frozenset(),
                       stale_tmp_s: float = 600) -> list[tuple[Path, int]]:
    """Delete the least recently modified kept files until the rest fit in ``budget`` bytes (never those in
    ``keep``), and temporary files (``*suffix.*.tmp``) untouched for ``stale_tmp_s``; the (path, size) deleted."""
    now = time.time()
    for entry in Path(folder).glob(f"*{suffix}.*.tmp"):
        try:
            if now - entry.stat().st_mtime > stale_tmp_s:
                entry.unlink()
        except OSError:
            pass
    files = sorted(kept_files(folder, suffix), key=lambda f: f[2])
    total = sum(size for _, size, _ in files)
    deleted = []
    for path, size, _ in files:
        if total <= budget:
            break
        if path in keep:
            continue
        if remove_kept([path]):
            total -= size
            deleted.append((path, size))
    return deleted
