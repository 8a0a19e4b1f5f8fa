"""The chat window with the real engine (built-in model) on its thread and a real history on disk."""

from __future__ import annotations

import time

from app_fixtures import quick_prefs, send, stored, wait_idle
from app.storage import ChatStore
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

LONG_QUESTION = "Count from 1 to 300, one number per line."


def answer_cards(window):
    return [c for c in window.messages.cards if c.message.role == "assistant"]


def test_enter_sends_and_the_answer_streams_in_and_is_saved(qtbot, open_window, home):
    window = open_window()
    window.composer.input.setFocus()
    qtbot.keyClicks(window.composer.input, "Hello")
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer.input, "what is the capital of France?")
    assert window.composer.input.toPlainText() == "Hello\nwhat is the capital of France?"  # Shift+Enter: new line
    assert window.messages.cards == []

    seen = []

    def watch():
        cards = answer_cards(window)
        if cards and cards[0].body.source_text and cards[0].body.source_text not in seen:
            seen.append(cards[0].body.source_text)
        return bool(cards) and not window.session.answering
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    assert window.composer.input.toPlainText() == ""
    assert window.messages.cards[0].body.toPlainText() == "Hello\nwhat is the capital of France?"
    assert window.composer.button.text() == "Stop"
    qtbot.waitUntil(watch, timeout=240_000)
    wait_idle(qtbot, window)

    answer = answer_cards(window)[0]
    shown = answer.body.source_text
    assert shown.strip(), "the answer is empty"
    assert len(seen) >= 2 and all(shown.startswith(p) for p in seen[:-1]), f"not streamed: {seen}"
    assert "Paris" in shown
    footer = answer.footer.text()
    assert "token" in footer and "tokens/s" in footer and "first token" in footer, footer
    assert window.composer.button.text() == "Send"
    assert window.status.context.text().startswith("Context ") and window.status.context.text().endswith("/ 512")
    assert "SmolLM2" in window.status.model.text()
    assert stored(home) == [("user", "Hello\nwhat is the capital of France?", 1, None),
                            ("assistant", shown, 1, answer.message.finish_reason)]
    assert window.conversations.titles() == ["Hello what is the capital of France?"]  # the question, on one line

    answer.copy_button.click()
    assert QApplication.clipboard().text() == shown


def test_stop_ends_a_long_answer_at_once_and_the_input_stays_usable(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=400))
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: len(answer_cards(window)[0].body.source_text) > 3, timeout=240_000)
    qtbot.keyClicks(window.composer.input, "next question, typed meanwhile")
    assert window.composer.input.toPlainText() == "next question, typed meanwhile"
    started = time.monotonic()
    window.composer.button.click()  # "Stop"
    wait_idle(qtbot, window, timeout=20_000)
    assert time.monotonic() - started < 20
    answer = answer_cards(window)[0]
    assert "Stopped" in answer.footer.text()
    assert answer.message.stats["generated_tokens"] < 400
    assert window.composer.input.toPlainText() == "next question, typed meanwhile"
    role, content, complete, reason = stored(home)[1]
    assert (role, complete, reason) == ("assistant", 0, "cancelled")
    assert content == answer.body.source_text and content.strip()


def _version_of(card) -> str:
    return card.version.text() if card.version.isVisible() else ""


def test_regenerate_keeps_the_old_answer_as_a_version_and_continues_from_the_one_shown(qtbot, open_window, home):
    window = open_window(quick_prefs(temperature=0.9, seed=None))
    send(qtbot, window, "Name a colour.")
    first = answer_cards(window)[0]
    first_text, first_uid = first.message.content, first.message.uid
    assert first.regenerate_button.isVisible() and _version_of(first) == ""
    first.regenerate_button.click()
    qtbot.waitUntil(lambda: answer_cards(window) and answer_cards(window)[0].message.uid != first_uid, timeout=5000)
    wait_idle(qtbot, window)
    second = answer_cards(window)[0]
    assert [c.message.role for c in window.messages.cards] == ["user", "assistant"]
    assert second.message.complete and _version_of(second) == "2/2"
    assert [r[1] for r in stored(home)] == ["Name a colour.", first_text, second.message.content]  # nothing lost

    second.previous_version.click()                       # < : the first answer again
    qtbot.waitUntil(lambda: answer_cards(window) and answer_cards(window)[0].message.uid == first_uid, timeout=5000)
    shown = answer_cards(window)[0]
    assert shown.body.source_text == first_text and _version_of(shown) == "1/2"
    assert not shown.previous_version.isEnabled() and shown.next_version.isEnabled()
    send(qtbot, window, "And another one?")               # the conversation goes on from the one shown
    store = ChatStore(home / "chats.sqlite3")
    path = store.messages(window.session.conversation.uid)
    store.close()
    assert [m.content for m in path[:3]] == ["Name a colour.", first_text, "And another one?"]
    assert path[2].parent == first_uid


def test_editing_an_earlier_question_keeps_the_old_one_and_its_answers_as_a_version(qtbot, open_window, home):
    window = open_window()
    send(qtbot, window, "What is 2 + 2?")
    send(qtbot, window, "And 3 + 3?")
    before = [c.message.content for c in window.messages.cards]
    assert len(before) == 4
    first = window.messages.cards[0]
    assert not first.editor.isVisible()
    first.edit_button.click()
    assert first.editor.isVisible() and first.editor.toPlainText() == "What is 2 + 2?"
    first.editor.setPlainText("What is the capital of Japan?")
    first.edit_send.click()
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2, timeout=5000)
    wait_idle(qtbot, window)
    cards = window.messages.cards
    assert cards[0].body.toPlainText() == "What is the capital of Japan?" and _version_of(cards[0]) == "2/2"
    assert "Tokyo" in cards[1].body.source_text
    assert cards[1].message.stats["prompt_tokens"] < window.session.engine.info.context_length
    assert len(stored(home)) == 6                         # the first question and its turns are kept

    cards[0].previous_version.click()                     # back to the first question and everything after it
    qtbot.waitUntil(lambda: [c.message.content for c in window.messages.cards] == before, timeout=5000)
    assert _version_of(window.messages.cards[0]) == "1/2"


def test_the_history_is_there_after_restarting_the_window(qtbot, open_window, home):
    window = open_window()
    send(qtbot, window, "Tell me a fun fact about cats.")
    answer = answer_cards(window)[0].body.source_text
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)

    again = open_window()
    qtbot.waitUntil(lambda: again.conversations.titles() == ["Tell me a fun fact about cats."], timeout=5000)
    again.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(again.messages.cards) == 2, timeout=5000)
    assert again.messages.cards[0].body.toPlainText() == "Tell me a fun fact about cats."
    assert again.messages.cards[1].body.source_text == answer
    assert "tokens/s" in again.messages.cards[1].footer.text()
    assert again.title.text() == "Tell me a fun fact about cats."


def test_closing_the_window_during_an_answer_stops_it_and_saves_it(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=400))
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: len(answer_cards(window)[0].body.source_text) > 3, timeout=240_000)
    window.close()
    assert window.isVisible()  # it first stops the answer...
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)  # ...then closes
    role, content, complete, reason = stored(home)[1]
    assert (role, complete, reason) == ("assistant", 0, "cancelled")
    assert content.strip() and content == answer_cards(window)[0].message.content


def test_a_conversation_longer_than_the_context_shows_what_was_left_out(qtbot, open_window, home):
    # an earlier conversation of ~660 tokens, written before the window opens; the context holds 512
    store = ChatStore(home / "chats.sqlite3")
    store.create_conversation("long", "A long talk")
    from app.storage import Message
    filler = " ".join(["The quick brown fox jumps over the lazy dog."] * 10)  # ~110 tokens
    store.add_messages("long", [Message(f"m{i}", "user" if i % 2 == 0 else "assistant", f"{i}: {filler}", time.time())
                                for i in range(6)])
    store.close()
    window = open_window(quick_prefs(max_new_tokens=8))
    qtbot.waitUntil(lambda: window.conversations.titles() == ["A long talk"], timeout=5000)
    window.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 6, timeout=5000)
    assert not window.messages.banner.isVisible()
    send(qtbot, window, "Summarise.")
    banner = window.messages.banner.text()
    assert window.messages.banner.isVisible() and "no longer fit in the model's context (512 tokens)" in banner
    dropped = int(banner.split()[0])
    assert dropped >= 2
    left_out = [c.left_out.isVisible() for c in window.messages.cards]
    assert left_out == [True] * dropped + [False] * (8 - dropped)


def test_stop_during_a_long_prompts_prefill_ends_the_answer_before_its_first_token(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=16))
    long_prompt = "Summarise this: " + " ".join(["The quick brown fox jumps over the lazy dog."] * 40)  # ~420 tokens
    send(qtbot, window, long_prompt, wait=False)
    # the status bar shows the prompt's size when the model starts on it: the prefill is running then
    qtbot.waitUntil(lambda: int(window.status.context.text().split()[1] or 0) > 300, timeout=60_000)
    window.composer.button.click()  # "Stop"
    wait_idle(qtbot, window, timeout=30_000)
    answer = answer_cards(window)[0]
    assert answer.message.stats["generated_tokens"] == 0 and answer.body.source_text == ""
    assert "Stopped" in answer.footer.text()
    assert stored(home)[1][2:] == (0, "cancelled")


def test_stop_before_the_model_has_the_question_is_not_lost(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=64))
    send(qtbot, window, "Tell me about the sea.", wait=False)
    window.composer.button.click()  # at once: the question may not even be committed yet
    wait_idle(qtbot, window, timeout=30_000)
    answer = answer_cards(window)[0]
    assert "Stopped" in answer.footer.text()
    assert answer.message.stats["generated_tokens"] <= 1
    assert [(r[0], r[2], r[3]) for r in stored(home)] == [("user", 1, None), ("assistant", 0, "cancelled")]
