"""The sizes and SHA-256s recorded at a file's first download, for files nobody published a hash of.

Kept in ``.verified.json`` next to the files, so that a later run (or ``list``) can tell a
damaged or replaced file from the one that was downloaded.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from engine.atomic_write import write_text_atomically

RECORD_FILE = ".verified.json"


@dataclass(frozen=True)
class Record:
    size: int
    sha256: str
    source: str      # the address it came from, or "present on disk"
    recorded: str    # ISO date


class Records:
    """Read and update one folder's ``.verified.json``."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / RECORD_FILE

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return doc.get("files", {}) if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}  # no record yet, or an unreadable one: treat the hashes as unknown

    def get(self, name: str) -> Record | None:
        entry = self._load().get(name)
        try:
            return Record(int(entry["size"]), str(entry["sha256"]), str(entry.get("source", "")),
                          str(entry.get("recorded", "")))
        except (TypeError, KeyError, ValueError):
            return None

    def put(self, name: str, size: int, sha256: str, source: str) -> Record:
        """Record a file; raises OSError when the record cannot be written (the caller says so and goes on)."""
        files = self._load()
        record = Record(size, sha256, source, datetime.date.today().isoformat())
        files[name] = {"size": record.size, "sha256": record.sha256, "source": record.source,
                       "recorded": record.recorded}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # whole or not at all, and retried while another program (a backup, an antivirus) holds the old one
        write_text_atomically(self.path, json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
        return record

    def reset_hint(self, name: str) -> str:
        """How to accept another copy of a file whose size and checksum its record pins."""
        return f"remove the entry {name!r} from {self.path} (or delete that file) so that a new copy is accepted"
