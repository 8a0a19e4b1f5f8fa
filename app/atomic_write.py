"""Write a small text file whole or not at all, even when another program briefly holds the old one.

The text goes to ``<name>.tmp`` and replaces the file in one step, so a crash mid-write leaves the
previous file. On Windows that replace fails while another process has the file open (an
antivirus scan, a backup tool, an editor showing an export): it is tried again for about a second,
then given up with a message that says what to do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ATTEMPTS = 6
FIRST_WAIT_S = 0.05                       # doubled after each failed attempt: ~1.5 s in all


def write_text_atomically(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    wait = FIRST_WAIT_S
    for attempt in range(ATTEMPTS):
        try:
            os.replace(tmp, path)
            return path
        except OSError as exc:
            if attempt == ATTEMPTS - 1:
                tmp.unlink(missing_ok=True)
                raise OSError(f"{path} could not be written ({exc.strerror or exc}); another program may be using "
                              "it. Close that program and try again.") from None
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")
