"""The chats list: Rename/Export/Delete as buttons and keys, search with the words that matched, titles from the
first question, and every conversation exported to one file and imported back."""

from __future__ import annotations

import json
import time

from app_fixtures import quick_prefs, send, wait_idle
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QLineEdit, QMessageBox

from app.storage import ChatStore, Message


def _answer_modal(kind, act) -> list:
    """Once a modal dialog of ``kind`` shows, call ``act(dialog)``; the list gets the dialog's class name."""
    seen = []

    def find() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, kind):
            QTimer.singleShot(30, find)
            return
        seen.append(type(dialog).__name__)
        act(dialog)
    QTimer.singleShot(30, find)
    return seen


def _store(home, conversations: dict[str, list[str]]) -> None:
    """Conversations (uid -> alternating question/answer texts) written straight into the history."""
    store = ChatStore(home / "chats.sqlite3")
    for n, (uid, texts) in enumerate(conversations.items()):
        store.create_conversation(uid, texts[0][:40], created_at=time.time() + n)
        store.add_messages(uid, [Message(f"{uid}-{i}", "user" if i % 2 == 0 else "assistant", t, time.time())
                                 for i, t in enumerate(texts)])
    store.close()


def test_rename_export_and_delete_are_buttons_under_the_list_and_keys_on_it(qtbot, open_window, home, tmp_path):
    _store(home, {"a": ["Where is the Great Wall?", "In China."], "b": ["Say hi.", "Hi!"]})
    window = open_window()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    chats = window.conversations
    qtbot.waitUntil(lambda: chats.list.count() == 2, timeout=10_000)
    chats.select("a")
    assert chats.rename_button.isVisible() and chats.rename_button.isEnabled()

    def rename(dialog) -> None:
        dialog.setTextValue("长城在哪里")
        dialog.accept()
    _answer_modal(QInputDialog, rename)
    chats.rename_button.click()
    qtbot.waitUntil(lambda: "长城在哪里" in chats.titles(), timeout=5000)

    target = tmp_path / "导出的对话.md"

    def save(dialog) -> None:                              # what a user types into the name box
        dialog.findChild(QLineEdit, "fileNameEdit").setText(str(target))
        dialog.accept()
    _answer_modal(QFileDialog, save)
    chats.export_button.click()
    qtbot.waitUntil(target.exists, timeout=10_000)
    assert "Where is the Great Wall?" in target.read_text(encoding="utf-8")

    def title_with_f2(dialog) -> None:
        dialog.setTextValue("Renamed with F2")
        dialog.accept()
    _answer_modal(QInputDialog, title_with_f2)
    chats.list.setFocus()
    qtbot.keyClick(chats.list, Qt.Key.Key_F2)
    qtbot.waitUntil(lambda: "Renamed with F2" in chats.titles(), timeout=5000)

    seen = _answer_modal(QMessageBox, lambda box: box.button(QMessageBox.StandardButton.Yes).click())
    qtbot.keyClick(chats.list, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: chats.titles() == ["Say hi."], timeout=5000)
    assert seen == ["QMessageBox"]
    _answer_modal(QMessageBox, lambda box: box.button(QMessageBox.StandardButton.Yes).click())
    chats.select("b")
    chats.delete_button.click()
    qtbot.waitUntil(lambda: chats.titles() == [], timeout=5000)
    assert not chats.delete_button.isEnabled()


def test_search_shows_the_words_that_matched_under_each_title(qtbot, open_window, home):
    _store(home, {"a": ["Tell me about walls.", "The Great Wall of China, 长城, is over 20,000 km long in total."],
                  "b": ["Say hi.", "Hi!"], "c": ["长城 facts", "..."]})
    window = open_window()
    chats = window.conversations
    qtbot.waitUntil(lambda: chats.list.count() == 3, timeout=10_000)
    chats.search.setText("长城")
    qtbot.waitUntil(lambda: chats.list.count() == 2, timeout=5000)
    assert chats.titles() == ["长城 facts", "Tell me about walls."]
    row = chats.titles().index("Tell me about walls.")
    assert "长城" in chats.snippet_of(row) and chats.list.item(row).text().endswith(chats.snippet_of(row))
    assert chats.list.item(row).text().startswith("Tell me about walls.\n")


def test_titles_come_from_the_first_question_and_follow_its_edit_until_renamed(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=6))
    send(qtbot, window, "# How do I **sort** a list in `Python`?")
    assert window.conversations.titles() == ["How do I sort a list in Python?"] == [window.title.text()]
    first = window.messages.cards[0]
    first.edit_button.click()
    first.editor.setPlainText("How do I reverse a list?")
    first.edit_send.click()
    wait_idle(qtbot, window)
    assert window.conversations.titles() == ["How do I reverse a list?"] == [window.title.text()]
    window.rename(window.session.conversation.uid, "My list questions")
    first = window.messages.cards[0]
    first.edit_button.click()
    first.editor.setPlainText("How do I copy a list?")
    first.edit_send.click()
    wait_idle(qtbot, window)
    assert window.conversations.titles() == ["My list questions"]          # chosen by the user: kept


def test_every_conversation_exported_to_one_file_comes_back_with_its_settings_versions_and_models(
        qtbot, open_window, home, tmp_path, monkeypatch):
    window = open_window(quick_prefs(temperature=0.9, seed=None, max_new_tokens=8))
    window.session_new()
    window.session.set_draft_settings("用中文回答。", {"top_k": 5})
    send(qtbot, window, "Name a colour.")
    window.messages.cards[1].regenerate_button.click()
    qtbot.waitUntil(lambda: window.session.answering, timeout=5000)
    wait_idle(qtbot, window)
    send(qtbot, window, "And a fruit?")
    window.session_new()
    send(qtbot, window, "Say hi.")
    archive = tmp_path / "所有对话.json"
    window.export_all(str(archive))
    qtbot.waitUntil(archive.exists, timeout=10_000)
    data = json.loads(archive.read_text(encoding="utf-8"))
    assert data["format"] == "llama-desk-conversations" and data["settings"]["model"]["source"] == "builtin"
    assert data["settings"]["chat"]["temperature"] == 0.9 and len(data["conversations"]) == 2
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)

    other = tmp_path / "另一台电脑"
    other.mkdir()
    monkeypatch.setenv("LLAMA_DESK_HOME", str(other))
    from app.main_window import MainWindow, Services
    from app.storage_worker import Storage
    again = MainWindow(quick_prefs(), other, Services(Storage(other / "chats.sqlite3"), window.engine,
                                                      owns_engine=False))
    qtbot.addWidget(again)
    again.show()
    again.start(load_model=False)
    again.import_conversations(str(archive))
    qtbot.waitUntil(lambda: again.conversations.list.count() == 2, timeout=10_000)
    assert sorted(again.conversations.titles()) == ["Name a colour.", "Say hi."]
    store_a, store_b = ChatStore(home / "chats.sqlite3"), ChatStore(other / "chats.sqlite3")
    try:
        for before in store_a.conversations():
            after = next(c for c in store_b.conversations() if c.title == before.title)
            assert (after.system_prompt, after.settings) == (before.system_prompt, before.settings)
            shown_a, shown_b = store_a.messages(before.uid), store_b.messages(after.uid)
            assert [(m.role, m.content, m.version, m.versions, m.stats.get("model")) for m in shown_a] == \
                   [(m.role, m.content, m.version, m.versions, m.stats.get("model")) for m in shown_b]
            assert len(store_a.all_versions(before.uid)) == len(store_b.all_versions(after.uid))
        assert store_b.messages(next(c.uid for c in store_b.conversations() if c.title == "Name a colour."))[1] \
            .versions == 2
    finally:
        store_a.close()
        store_b.close()
    bad = tmp_path / "not an export.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    again.import_conversations(str(bad))
    qtbot.waitUntil(lambda: again.notice.isVisible(), timeout=10_000)
    assert "is not a llama-desk export" in again.notice.text() and again.conversations.list.count() == 2
    again.close()
    qtbot.waitUntil(lambda: not again.isVisible(), timeout=30_000)
