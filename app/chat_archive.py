"""Every conversation in one JSON file, and back: a backup, or a move to another PC.

The file keeps each conversation's settings (system prompt, generation overrides), every version of
every message (edits and regenerations, with which one is shown), the model that wrote each answer,
and the app's model choice and default settings. Importing adds the conversations under new ids (a
conversation is never overwritten, even when imported twice); a single conversation exported as
JSON imports too. The app's own settings are not replaced by an import.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from .atomic_write import write_text_atomically
from .export import to_json
from .storage import ChatStore, Message, StorageError

ARCHIVE_FORMAT = "llama-desk-conversations"
ARCHIVE_VERSION = 1
ROLES = ("system", "user", "assistant")


def export_all(store: ChatStore, path: str | Path, app_settings: dict) -> int:
    """Write every conversation to ``path``; returns how many."""
    conversations = []
    for conv in store.conversations():
        entry = to_json(conv, store.messages(conv.uid))
        entry["versions"] = [dict(asdict(m), selected=selected) for m, selected in store.all_versions(conv.uid)]
        conversations.append(entry)
    archive = {"format": ARCHIVE_FORMAT, "format_version": ARCHIVE_VERSION, "exported_at": time.time(),
               "settings": app_settings, "conversations": conversations}
    write_text_atomically(path, json.dumps(archive, ensure_ascii=False, indent=2) + "\n")
    return len(conversations)


def _refuse(path: Path, why: str) -> StorageError:
    return StorageError(f"{path} cannot be imported: {why}. Choose a file exported by llama-desk (Chat > Export all, "
                        "or a conversation exported as JSON).")


def _message(raw, path: Path) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in ROLES or not isinstance(raw.get("content"), str):
        raise _refuse(path, "a message has no role (system, user or assistant) or no text")
    stats = raw.get("stats") if isinstance(raw.get("stats"), dict) else {}
    return Message(str(raw.get("uid") or uuid.uuid4().hex), raw["role"], raw["content"],
                   float(raw.get("created_at") or time.time()), bool(raw.get("complete", True)),
                   raw.get("finish_reason") if isinstance(raw.get("finish_reason"), str) else None, stats,
                   str(raw["parent"]) if raw.get("parent") else None)


def read_archive(path: str | Path) -> list[dict]:
    """The conversations in an export file (all of an archive, or the one of a single export)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _refuse(path, f"it cannot be read as JSON ({exc})") from None
    if isinstance(data, dict) and data.get("format") == ARCHIVE_FORMAT:
        conversations = data.get("conversations")
    elif isinstance(data, dict) and data.get("format") == "llama-desk-conversation":
        conversations = [data]
    else:
        raise _refuse(path, "it is not a llama-desk export")
    if not isinstance(conversations, list) or not all(isinstance(c, dict) and isinstance(c.get("conversation"), dict)
                                                       for c in conversations):
        raise _refuse(path, "its list of conversations is damaged")
    return conversations


def import_archive(store: ChatStore, path: str | Path) -> int:
    """Add the conversations of an export file to the history; returns how many."""
    path = Path(path)
    conversations = read_archive(path)
    plans = []
    for entry in conversations:   # every message checked before anything is written
        raw = entry.get("versions") or entry.get("details") or []
        plans.append((entry["conversation"], [(_message(m, path), m.get("selected", True)) for m in raw]))
    for conv, messages in plans:
        uid = uuid.uuid4().hex
        settings = conv.get("settings") if isinstance(conv.get("settings"), dict) else {}
        prompt = conv.get("system_prompt") if isinstance(conv.get("system_prompt"), str) else None
        store.create_conversation(uid, str(conv.get("title") or "Imported"), prompt, settings,
                                  float(conv.get("created_at") or time.time()))
        new_uids = {m.uid: uuid.uuid4().hex for m, _shown in messages}
        linear = not any(m.parent for m, _shown in messages)   # a single export: its shown messages, in order
        previous = None
        for m, _shown in messages:
            parent = previous if linear else new_uids.get(m.parent)
            store.add_messages(uid, [Message(new_uids[m.uid], m.role, m.content, m.created_at, m.complete,
                                             m.finish_reason, m.stats, parent)])
            previous = new_uids[m.uid]
        for m, shown in messages:
            if shown:
                store.show_version(new_uids[m.uid], 0)
    return len(plans)
