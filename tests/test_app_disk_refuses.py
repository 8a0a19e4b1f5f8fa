"""When the disk refuses the chat history's writes (full, failing), nothing of the chat is lost: the window says
so once, keeps what it could not write, and writes all of it, in order, as soon as the disk takes it again.

The refusal is SQLite's own: the history's connection is switched to ``PRAGMA query_only`` on its thread, so
every write fails inside SQLite with an ``OperationalError``, the error a full disk gives ("database or disk is
full"); the test's own connection reads what reached the file.
"""

from __future__ import annotations

import sqlite3

import pytest
from PySide6.QtCore import QObject, QTimer, Signal

import app.storage_worker as storage_worker
from app.storage import Message
from app.storage_worker import Storage
from app_fixtures import quick_prefs, send, stored, wait_idle

LONG_QUESTION = "Count from 1 to 300, one number per line."


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(storage_worker, "RETRY_MS", 100)


def on_storage_thread(qtbot, storage: Storage, action):
    """Run ``action(connection)`` on the history's own thread, between its requests, and wait for it."""
    done = []
    QTimer.singleShot(0, storage.worker, lambda: done.append(action(storage.worker._open().db)))
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)


def refuse_writes(qtbot, storage: Storage, refuse: bool) -> None:
    on_storage_thread(qtbot, storage, lambda db: db.execute(f"PRAGMA query_only = {int(refuse)}"))


class Tokens(QObject):
    """The engine thread's signal of streamed answer text, as the window connects it."""
    tokens = Signal(str, str)


@pytest.fixture
def history(qtbot, tmp_path):
    """The history on its own thread (a Chinese file name), the answer stream into it, and what it told."""
    class History:
        path = tmp_path / "聊天 chats.sqlite3"
        storage = Storage(path)
        stream = Tokens()
        told: list[str] = []
        saved: list[bool] = []

        def add(self, *messages: Message) -> None:
            added = []
            self.storage.call("add_messages", "c1", list(messages), then=added.append)
            qtbot.waitUntil(lambda: bool(added), timeout=10_000)

        def on_disk(self, query: str) -> list[tuple]:
            db = sqlite3.connect(self.path)
            try:
                return db.execute(query).fetchall()
            finally:
                db.close()

    h = History()
    h.stream.tokens.connect(h.storage.worker.append_text)
    h.storage.unsaved.connect(h.told.append)
    h.storage.saved_again.connect(lambda: h.saved.append(True))
    h.storage.call("create_conversation", "c1", "长城")
    yield h
    h.storage.close()


def test_refused_writes_are_kept_and_written_in_order_once_the_disk_takes_them(qtbot, history):
    history.add(Message("q1", "user", "请介绍长城。", 1.0), Message("a1", "assistant", "", 2.0, complete=False))
    history.stream.tokens.emit("a1", "长城是")

    refuse_writes(qtbot, history.storage, True)            # the disk is full from here on
    for piece in ("中国古代的", "军事防御工程。"):
        history.stream.tokens.emit("a1", piece)
    history.storage.call("finish_message", "a1", "长城是中国古代的军事防御工程。", "stop",
                         {"generated_tokens": 9}, True)
    history.storage.call("rename_conversation", "c1", "长城 (已保存)")
    qtbot.waitUntil(lambda: bool(history.told), timeout=10_000)
    assert "readonly" in history.told[0] and history.saved == []

    listed = []
    history.storage.call("conversations", then=listed.append)  # reads go on meanwhile
    qtbot.waitUntil(lambda: bool(listed), timeout=10_000)
    assert history.on_disk("SELECT complete FROM messages WHERE uid = 'a1'") == [(0,)]
    assert history.on_disk("SELECT title FROM conversations") == [("长城",)]

    refuse_writes(qtbot, history.storage, False)           # space freed: the next retry writes everything
    qtbot.waitUntil(lambda: bool(history.saved), timeout=10_000)
    assert len(history.told) == 1                          # told once, not at every retry
    assert history.on_disk("SELECT content, complete, finish_reason FROM messages WHERE uid = 'a1'") \
        == [("长城是中国古代的军事防御工程。", 1, "stop")]
    assert history.on_disk("SELECT title FROM conversations") == [("长城 (已保存)",)]


def test_a_question_the_disk_refuses_gets_no_answer_but_is_kept_with_its_error(qtbot, history):
    """The window shows the question and the error in place of an answer: once written, the file says the same."""
    refuse_writes(qtbot, history.storage, True)
    for turn in ("1", "2"):                                # refused by SQLite, then queued behind the first
        replies, errors = [], []
        history.storage.call("add_messages", "c1", [Message(f"q{turn}", "user", f"问题 {turn}", 1.0),
                                                    Message(f"a{turn}", "assistant", "", 2.0, complete=False)],
                             then=replies.append, otherwise=errors.append)
        qtbot.waitUntil(lambda: bool(errors or replies), timeout=10_000)
        assert replies == [] and "readonly" in errors[0]   # the session then ends the answer with it:
        history.storage.call("finish_message", f"a{turn}", "", "error", {"error": errors[0]}, False)
    refuse_writes(qtbot, history.storage, False)
    qtbot.waitUntil(lambda: bool(history.saved), timeout=10_000)
    assert history.on_disk("SELECT uid, content, finish_reason FROM messages ORDER BY id") == [
        ("q1", "问题 1", None), ("a1", "", "error"), ("q2", "问题 2", None), ("a2", "", "error")]


def test_text_streamed_while_the_disk_refuses_is_kept_in_order_for_an_unfinished_answer(qtbot, history):
    """An answer cut short by a crash after the disk came back keeps every piece, in the order streamed."""
    history.add(Message("q1", "user", "q", 1.0), Message("a1", "assistant", "", 2.0, complete=False))
    refuse_writes(qtbot, history.storage, True)
    pieces = [f"{i}、" for i in range(40)]
    for piece in pieces[:20]:
        history.stream.tokens.emit("a1", piece)
    qtbot.wait(3 * storage_worker.FLUSH_MS)                 # several flushes refused
    refuse_writes(qtbot, history.storage, False)
    for piece in pieces[20:]:
        history.stream.tokens.emit("a1", piece)
    synced = []
    history.storage.call("conversations", then=synced.append)  # a request writes the streamed text before it
    qtbot.waitUntil(lambda: bool(history.saved and synced), timeout=10_000)
    assert history.on_disk("SELECT content, complete FROM messages WHERE uid = 'a1'") == [("".join(pieces), 0)]


def test_the_window_says_the_chat_is_not_saved_yet_and_saves_the_answer_when_the_disk_takes_it(
        qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=200))
    send(qtbot, window, "Hello")
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: window.session.answering, timeout=10_000)
    refuse_writes(qtbot, window.storage, True)             # the question is on disk; its answer cannot be
    qtbot.waitUntil(lambda: window.notice.kind == "unsaved", timeout=60_000)
    assert "not saved yet" in window.notice.label.text() and "free some disk space" in window.notice.label.text()
    window.stop_answer()
    wait_idle(qtbot, window)
    shown = window.session.messages[-1]
    assert shown.role == "assistant" and shown.content
    assert stored(home)[-1][1:] != (shown.content, 1, shown.finish_reason)   # not on disk yet

    refuse_writes(qtbot, window.storage, False)
    qtbot.waitUntil(lambda: window.notice.kind != "unsaved", timeout=10_000)
    assert window.status.currentMessage() == "The chat is saved."
    assert stored(home)[-2:] == [("user", LONG_QUESTION, 1, None), ("assistant", shown.content, int(shown.complete),
                                                                      shown.finish_reason)]
