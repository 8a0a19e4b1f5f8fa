"""The sizes and SHA-256s recorded at a file's first download, for files nobody published a hash of.

Kept in ``.verified.json`` next to the files, so that a later run (or ``list``) can tell a
damaged or replaced file from the one that was downloaded.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

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
        files = self._load()
        record = Record(size, sha256, source, datetime.date.today().isoformat())
        files[name] = {"size": record.size, "sha256": record.sha256, "source": record.source,
                       "recorded": record.recorded}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # never leave a half-written record
        return record
