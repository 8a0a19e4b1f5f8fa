"""How answers look in the window: line breaks kept, code blocks, links."""

from __future__ import annotations

import time

from app.storage import ChatStore, Message

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
