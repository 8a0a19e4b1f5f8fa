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

    @property
    def interrupted(self) -> bool:
        return not self.complete and self.finish_reason is None


def _conversation(row) -> Conversation:
    return Conversation(row["uid"], row["title"], row["created_at"], row["updated_at"], row["system_prompt"],
                        json.loads(row["settings"] or "{}"))


def _message(row) -> Message:
    return Message(row["uid"], row["role"], row["content"], row["created_at"], bool(row["complete"]),
                   row["finish_reason"], json.loads(row["stats"] or "{}"))


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

    # -- messages -----------------------------------------------------------------------------------

    def messages(self, conversation_uid: str) -> list[Message]:
        rows = self.db.execute("SELECT m.* FROM messages m JOIN conversations c ON m.conversation_id = c.id "
                               "WHERE c.uid = ? ORDER BY m.id", (conversation_uid,))
        return [_message(r) for r in rows]

    def add_messages(self, conversation_uid: str, messages: list[Message]) -> None:
        """Append messages in one transaction (a user's question and its empty answer go in together)."""
        with self.db:
            row = self.db.execute("SELECT id FROM conversations WHERE uid = ?", (conversation_uid,)).fetchone()
            if row is None:
                raise StorageError(f"The conversation {conversation_uid} no longer exists.")
            for m in messages:
                self.db.execute("INSERT INTO messages (uid, conversation_id, role, content, created_at, complete, "
                                "finish_reason, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (m.uid, row[0], m.role, m.content, m.created_at, int(m.complete), m.finish_reason,
                                 json.dumps(m.stats)))
            self._touch(row[0])

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

    def edit_message(self, uid: str, content: str) -> None:
        with self.db:
            self.db.execute("UPDATE messages SET content = ? WHERE uid = ?", (content, uid))

    def delete_messages_from(self, uid: str, keep_this: bool = False) -> None:
        """Delete a message (or keep it, with ``keep_this``) and every later one of its conversation."""
        with self.db:
            row = self.db.execute("SELECT id, conversation_id FROM messages WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return
            first = row["id"] + 1 if keep_this else row["id"]
            self.db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?",
                            (row["conversation_id"], first))
            self._touch(row["conversation_id"])

    def _touch(self, conversation_id: int) -> None:
        self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation_id))
