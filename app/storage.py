"""The chat history: one SQLite file in the user-data folder, used from one thread.

WAL journal with ``synchronous=NORMAL``: a commit survives the process being killed at any moment
(power loss may cost the last commits, never the file). ``secure_delete`` overwrites deleted text,
and a deletion ends with a truncating WAL checkpoint, so a deleted conversation's text is gone from
the database file and from its journal. The schema carries its version (``PRAGMA user_version``)
and is brought up to date, step by step, by ``MIGRATIONS`` - an old history is never dropped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

# MIGRATIONS[i] takes a database from version i to i + 1. Append; never edit a step that shipped.
MIGRATIONS: list[str] = [
    # 1: conversations and their messages
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
    # 2: answers are saved while they stream: whether one is complete, why it ended, its speed
    """
    ALTER TABLE messages ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE messages ADD COLUMN finish_reason TEXT;
    ALTER TABLE messages ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: a system prompt and generation settings per conversation
    """
    ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
    ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    """,
    # 4: versions: an edited question or a regenerated answer is a sibling of the one it replaces (same
    # parent); ``selected`` marks the version shown, and the conversation goes on from it
    """
    ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE;
    ALTER TABLE messages ADD COLUMN selected INTEGER NOT NULL DEFAULT 1;
    UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p
                                     WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id);
    CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id, id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StorageError(Exception):
    """The history cannot be opened or written; the message says what to do."""


@dataclass
class Conversation:
    uid: str
    title: str
    created_at: float
    updated_at: float
    system_prompt: str | None = None      # None: the app's default
    settings: dict = field(default_factory=dict)  # overrides of the default generation settings


@dataclass
class Message:
    uid: str
    role: str
    content: str
    created_at: float
    complete: bool = True
    finish_reason: str | None = None      # None on an unfinished answer: it was interrupted
    stats: dict = field(default_factory=dict)
    parent: str | None = None             # the message this one answers or follows (None: the first)
    version: int = 1                      # which of its versions (edits, regenerations) this is, from 1
    versions: int = 1                     # how many versions there are

    @property
    def interrupted(self) -> bool:
        return not self.complete and self.finish_reason is None


def _conversation(row) -> Conversation:
    return Conversation(row["uid"], row["title"], row["created_at"], row["updated_at"], row["system_prompt"],
                        json.loads(row["settings"] or "{}"))


def _message(row, version: int = 1, versions: int = 1) -> Message:
    return Message(row["uid"], row["role"], row["content"], row["created_at"], bool(row["complete"]),
                   row["finish_reason"], json.loads(row["stats"] or "{}"), row["parent_uid"], version, versions)


def snippet(content: str, needle: str, width: int) -> str:
    """The words around ``needle``'s first place in ``content``, on one line."""
    at = content.casefold().find(needle)
    start = max(0, at - width // 3)
    text = " ".join(content[start:start + width].split())
    return ("…" if start else "") + text + ("…" if start + width < len(content) else "")


def shown_path(rows) -> list[Message]:
    """The conversation as shown: from the first message, each time the selected version (else the newest)."""
    children: dict[int | None, list] = {}
    for row in rows:                                  # in id order: versions oldest first
        children.setdefault(row["parent_id"], []).append(row)
    path, parent = [], None
    while children.get(parent):
        versions = children[parent]
        index = next((i for i in range(len(versions) - 1, -1, -1) if versions[i]["selected"]), len(versions) - 1)
        path.append(_message(versions[index], index + 1, len(versions)))
        parent = versions[index]["id"]
    return path


class ChatStore:
    """Conversations and messages. Not thread-safe: create and use it on one thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=10)
            self.db.row_factory = sqlite3.Row
            # SQLite's lower() folds ASCII only; search folds any script the way Python does
            self.db.create_function("casefold", 1, lambda s: s.casefold() if isinstance(s, str) else s,
                                    deterministic=True)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"The chat history {self.path} cannot be opened: {exc}. Move the file away to "
                               "start a new history (it is kept for you to recover).") from None

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise StorageError(f"The chat history {self.path} was written by a newer llama-desk (schema {version}; "
                               f"this one reads up to {SCHEMA_VERSION}). Update llama-desk to open it.")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits first; BEGIN ... COMMIT makes each step all-or-nothing
            try:
                self.db.executescript(f"BEGIN;\n{MIGRATIONS[target - 1]}\nPRAGMA user_version={target};\nCOMMIT;")
            except sqlite3.DatabaseError:
                self.db.rollback()
                raise

    def close(self) -> None:
        self.db.close()

    # -- conversations ------------------------------------------------------------------------------

    def create_conversation(self, uid: str, title: str, system_prompt: str | None = None,
                            settings: dict | None = None, created_at: float | None = None) -> Conversation:
        now = created_at or time.time()
        with self.db:
            self.db.execute("INSERT INTO conversations (uid, title, created_at, updated_at, system_prompt, settings)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (uid, title, now, now, system_prompt, json.dumps(settings or {})))
        return Conversation(uid, title, now, now, system_prompt, dict(settings or {}))

    def conversations(self) -> list[Conversation]:
        rows = self.db.execute("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC")
        return [_conversation(r) for r in rows]

    def conversation(self, uid: str) -> Conversation | None:
        row = self.db.execute("SELECT * FROM conversations WHERE uid = ?", (uid,)).fetchone()
        return _conversation(row) if row else None

    def rename_conversation(self, uid: str, title: str) -> None:
        with self.db:
            self.db.execute("UPDATE conversations SET title = ? WHERE uid = ?", (title, uid))

    def set_conversation_settings(self, uid: str, system_prompt: str | None, settings: dict) -> None:
        with self.db:
            self.db.execute("UPDATE conversations SET system_prompt = ?, settings = ? WHERE uid = ?",
                            (system_prompt, json.dumps(settings), uid))

    def delete_conversation(self, uid: str) -> None:
        """Remove a conversation and overwrite its text, in the database and in its journal."""
        with self.db:
            self.db.execute("DELETE FROM conversations WHERE uid = ?", (uid,))  # messages cascade
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def search(self, text: str) -> list[str]:
        """Uids of conversations whose title or any message contains ``text`` (any case), newest first."""
        needle = text.casefold()
        rows = self.db.execute(
            "SELECT c.uid FROM conversations c WHERE instr(casefold(c.title), ?) OR EXISTS "
            "(SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND instr(casefold(m.content), ?)) "
            "ORDER BY c.updated_at DESC, c.id DESC", (needle, needle))
        return [r[0] for r in rows]

    def search_snippets(self, text: str, width: int = 60) -> list[tuple[str, str]]:
        """(uid, the text around the first match in its messages, or "" when the title matched) per conversation
        found by ``search``."""
        needle, found = text.casefold(), []
        for uid in self.search(text):
            row = self.db.execute("SELECT m.content FROM messages m JOIN conversations c ON m.conversation_id = c.id "
                                  "WHERE c.uid = ? AND instr(casefold(m.content), ?) ORDER BY m.id LIMIT 1",
                                  (uid, needle)).fetchone()
            found.append((uid, snippet(row[0], needle, width) if row else ""))
        return found

    # -- messages -----------------------------------------------------------------------------------

    def messages(self, conversation_uid: str) -> list[Message]:
        """The messages shown: the selected version at each step (every version stays stored)."""
        rows = self.db.execute("SELECT m.*, p.uid AS parent_uid FROM messages m "
                               "JOIN conversations c ON m.conversation_id = c.id "
                               "LEFT JOIN messages p ON m.parent_id = p.id WHERE c.uid = ? ORDER BY m.id",
                               (conversation_uid,))
        return shown_path(rows.fetchall())

    def all_versions(self, conversation_uid: str) -> list[tuple[Message, bool]]:
        """Every message of a conversation, every version, in order, each with whether it is the one shown."""
        rows = self.db.execute("SELECT m.*, p.uid AS parent_uid FROM messages m "
                               "JOIN conversations c ON m.conversation_id = c.id "
                               "LEFT JOIN messages p ON m.parent_id = p.id WHERE c.uid = ? ORDER BY m.id",
                               (conversation_uid,))
        return [(_message(r), bool(r["selected"])) for r in rows]

    def add_messages(self, conversation_uid: str, messages: list[Message]) -> None:
        """Add messages in one transaction (a question and its empty answer go in together), each shown.

        The first follows ``messages[0].parent`` (None: it starts the conversation), each next one the one
        before it unless it names its own parent. A message added where another already follows the same
        parent is a new version of that one (an edit, a regeneration): the older versions stay, unshown.
        """
        with self.db:
            row = self.db.execute("SELECT id FROM conversations WHERE uid = ?", (conversation_uid,)).fetchone()
            if row is None:
                raise StorageError(f"The conversation {conversation_uid} no longer exists.")
            previous = None
            for m in messages:
                parent = m.parent if m.parent is not None or previous is None else previous
                parent_id = self._message_id(parent) if parent is not None else None
                self.db.execute("UPDATE messages SET selected = 0 WHERE conversation_id = ? AND parent_id IS ?",
                                (row[0], parent_id))
                self.db.execute("INSERT INTO messages (uid, conversation_id, role, content, created_at, complete, "
                                "finish_reason, stats, parent_id, selected) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                                (m.uid, row[0], m.role, m.content, m.created_at, int(m.complete), m.finish_reason,
                                 json.dumps(m.stats), parent_id))
                previous = m.uid
            self._touch(row[0])

    def _message_id(self, uid: str) -> int:
        row = self.db.execute("SELECT id FROM messages WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise StorageError(f"The message {uid} no longer exists.")
        return row[0]

    def show_version(self, uid: str, step: int) -> str | None:
        """Show the version ``step`` places after (or before) message ``uid``'s; its uid (None: no such message)."""
        with self.db:
            row = self.db.execute("SELECT conversation_id, parent_id FROM messages WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return None
            versions = [r[0] for r in self.db.execute(
                "SELECT uid FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id", tuple(row))]
            chosen = versions[max(0, min(len(versions) - 1, versions.index(uid) + step))]
            self.db.execute("UPDATE messages SET selected = (uid = ?) WHERE conversation_id = ? AND parent_id IS ?",
                            (chosen, *row))
        return chosen

    def append_texts(self, pieces: dict[str, str]) -> None:
        """Add streamed text to unfinished answers: ``{message uid: text}``, one commit for all."""
        with self.db:
            for uid, text in pieces.items():
                self.db.execute("UPDATE messages SET content = content || ? WHERE uid = ? AND complete = 0 "
                                "AND finish_reason IS NULL", (text, uid))

    def finish_message(self, uid: str, content: str, finish_reason: str, stats: dict, complete: bool) -> None:
        with self.db:
            self.db.execute("UPDATE messages SET content = ?, finish_reason = ?, stats = ?, complete = ? "
                            "WHERE uid = ?", (content, finish_reason, json.dumps(stats), int(complete), uid))

    def reopen_message(self, uid: str) -> None:
        """An answer is being written on again: streamed text is appended to it until it finishes."""
        with self.db:
            self.db.execute("UPDATE messages SET complete = 0, finish_reason = NULL WHERE uid = ?", (uid,))

    def _touch(self, conversation_id: int) -> None:
        self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation_id))
