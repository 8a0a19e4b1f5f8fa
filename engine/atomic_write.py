"""Write a small file whole or not at all, even when another program briefly holds the old one.

The text goes to a temporary file next to it, which then replaces the file in one step, so a crash
mid-write leaves the previous file. On Windows that replace fails while another process has the file
open (an antivirus scan, a backup tool, a second llama-desk reading it): it is tried again for about a
second and a half before the error is passed on. Standard library only (the installer's build and the
downloader use it too).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

ATTEMPTS = 6
FIRST_WAIT_S = 0.05                       # doubled after each failed attempt: ~1.5 s in all


def replace_with_retry(source: str | Path, target: str | Path) -> None:
    """``os.replace`` that waits out a file held open by another program (Windows' sharing violation)."""
    wait = FIRST_WAIT_S
    for attempt in range(ATTEMPTS):
        try:
            os.replace(source, target)
            return
        except PermissionError:           # Windows: in use (winerror 5/32); elsewhere: really not allowed
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(wait)
            wait *= 2


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` in one step; raises OSError (the temporary file removed) when it cannot."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # two writers never share one
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        replace_with_retry(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path
