"""How answers look in the window: line breaks kept, code blocks, links."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QTextCursor
from PySide6.QtWidgets import QApplication, QMessageBox

from app.storage import ChatStore, Message
from app_fixtures import press_on_next_message_box

POEM = "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd so are you."


def _stored_conversation(home, answer: str, question: str = "Write a short poem.") -> None:
    store = ChatStore(home / "chats.sqlite3")
    store.create_conversation("c1", question)
    store.add_messages("c1", [Message("q1", "user", question, time.time()),
                              Message("a1", "assistant", answer, time.time())])
    store.close()


def _open_first(qtbot, window) -> None:
    qtbot.waitUntil(lambda: window.conversations.list.count() == 1, timeout=10_000)
    window.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2, timeout=10_000)


def test_single_line_breaks_in_an_answer_are_kept(qtbot, open_window, home):
    answer = f"Here is a poem:\n\n{POEM}\n\n```python\nprint('a')\nprint('b')\n```\nThe end."
    _stored_conversation(home, answer)
    window = open_window()
    _open_first(qtbot, window)
    shown = window.messages.cards[1].body.toPlainText()
    assert POEM in shown                                   # four lines, not one paragraph
    assert "print('a')\nprint('b')" in shown               # code blocks as they were
    assert window.messages.cards[1].body.source_text == answer   # the stored text is untouched


class LinkCatcher(QObject):
    """Registered with QDesktopServices for the test: records what the app asks the system to open."""

    def __init__(self):
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.opened.append(url.toString())


def _click_link(qtbot, view, text: str) -> None:
    """Click, with the mouse, on the link whose text is ``text``."""
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().isAnchor() and fragment.text() == text:
                cursor = QTextCursor(view.document())
                cursor.setPosition(fragment.position() + 1)
                qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.cursorRect(cursor).center())
                return
            it += 1
        block = block.next()
    raise AssertionError(f"no link {text!r}")


def test_links_in_answers_open_only_for_the_web_and_mail_after_showing_the_address(qtbot, open_window, home):
    address = "https://example.com/a/very/long/path?query=1&next=%2Fhome"
    answer = (f"[web]({address}) [mail](mailto:someone@example.com) [file](file:///etc/hostname) "
              "[search](search-ms:query=secret) [relative](notes.md)")
    _stored_conversation(home, answer)
    window = open_window()
    window.activateWindow()
    _open_first(qtbot, window)
    view = window.messages.cards[1].body
    catcher = LinkCatcher()
    for scheme in ("https", "http", "mailto", "file", "search-ms"):
        QDesktopServices.setUrlHandler(scheme, catcher, "open")
    try:
        seen = press_on_next_message_box(QMessageBox.StandardButton.No)
        _click_link(qtbot, view, "web")
        qtbot.waitUntil(lambda: bool(seen), timeout=5000)
        assert address in seen[0] and catcher.opened == []              # refused: nothing opened
        seen = press_on_next_message_box(QMessageBox.StandardButton.Yes)
        _click_link(qtbot, view, "web")
        qtbot.waitUntil(lambda: catcher.opened == [address], timeout=5000)
        seen = press_on_next_message_box(QMessageBox.StandardButton.Yes)
        _click_link(qtbot, view, "mail")
        qtbot.waitUntil(lambda: catcher.opened[-1:] == ["mailto:someone@example.com"], timeout=5000)
        for text in ("file", "search", "relative"):                     # never opened, never loaded here
            _click_link(qtbot, view, text)
            qtbot.wait(200)
            assert QApplication.activeModalWidget() is None
        assert len(catcher.opened) == 2 and view.source_text == answer and "web" in view.toPlainText()
    finally:
        for scheme in ("https", "http", "mailto", "file", "search-ms"):
            QDesktopServices.unsetUrlHandler(scheme)


CODE = "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))"
ANSWER_WITH_CODE = (f"Use `is_prime`:\n\n```python\n{CODE}\n```\n\n| n | prime |\n|---|---|\n| 7 | yes |\n\n"
                    "```\nplain text\n```")


def _format_at(view, text: str, offset: int = 0):
    """The character format of ``text``'s first character (+ offset) in the view."""
    position = view.document().toPlainText().index(text) + offset
    cursor = QTextCursor(view.document())
    cursor.setPosition(position + 1)
    return cursor.charFormat()


def test_code_blocks_are_highlighted_labelled_and_copied_in_the_light_and_dark_themes(qtbot, open_window, home):
    from pygments.styles import get_style_by_name
    from pygments.token import Keyword
    from PySide6.QtGui import QColor, QGuiApplication, QTextTable

    from app.theme import apply_theme

    _stored_conversation(home, ANSWER_WITH_CODE)
    window = open_window()
    window.activateWindow()
    _open_first(qtbot, window)
    view = window.messages.cards[1].body
    shown = view.toPlainText()
    assert f"python    Copy\n{CODE}" in shown and "code    Copy\nplain text" in shown   # the label, then the code
    light = QColor("#" + get_style_by_name("default").style_for_token(Keyword)["color"])
    assert _format_at(view, "def is_prime").foreground().color() == light
    assert _format_at(view, "is_prime`" if "is_prime`" in shown else "is_prime:").background().style() != Qt.BrushStyle.NoBrush
    tables = [f for f in view.document().rootFrame().childFrames() if isinstance(f, QTextTable)]
    assert len(tables) == 1 and tables[0].format().border() >= 1

    QGuiApplication.clipboard().clear()
    _click_link(qtbot, view, "Copy")                                  # the first block's
    assert QGuiApplication.clipboard().text() == CODE
    try:
        apply_theme("dark")                                          # re-rendered in the dark colours
        dark = QColor("#" + get_style_by_name("monokai").style_for_token(Keyword)["color"])
        qtbot.waitUntil(lambda: _format_at(view, "def is_prime").foreground().color() == dark, timeout=5000)
    finally:
        apply_theme("light")
    assert view.source_text == ANSWER_WITH_CODE                      # what is stored and copied is untouched
