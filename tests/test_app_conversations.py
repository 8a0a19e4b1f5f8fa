"""Conversations as a user moves between them: the context counter, who wrote what, settings before the
first message, one answer at a time (and which), the last conversation after a restart, continuing a
stopped answer."""

from __future__ import annotations

from app_fixtures import quick_prefs, send, stored, wait_idle
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.conversation_list import UID_ROLE
from app.engine_worker import EngineHost
from app.preferences import ModelChoice, load_preferences
from app.storage import ChatStore

LONG_QUESTION = "Count from 1 to 300, one number per line."


def _context(window) -> tuple[int, int]:
    """What the status bar says: 'Context 123 / 512'."""
    words = window.status.context.text().split()
    return int(words[1]), int(words[3])


def test_the_context_counter_follows_the_conversation_shown(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=60))
    send(qtbot, window, "Name three fruits.")
    first = window.messages.cards[1].message.stats
    after_first = _context(window)
    assert after_first == (first["prompt_tokens"] + first["generated_tokens"], 512)
    window.session_new()
    assert _context(window) == (0, 512)                          # a new chat uses nothing yet
    seen = []
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: window.session.answering and _context(window)[0] > 0, timeout=60_000)
    prompt = _context(window)[0]                                 # the question, as the prefill starts
    while window.session.answering:                              # then it grows as the answer streams
        seen.append(_context(window)[0])
        qtbot.wait(50)
    answer = window.messages.cards[1].message.stats
    assert seen == sorted(seen) and any(prompt < used < prompt + answer["generated_tokens"] for used in seen)
    assert _context(window)[0] == prompt + answer["generated_tokens"]
    window.conversations.select(window.conversations.list.item(1).data(UID_ROLE))   # back to the first chat
    qtbot.waitUntil(lambda: window.messages.cards and window.messages.cards[0].message.content == "Name three fruits.",
                    timeout=5000)
    assert _context(window) == after_first


def test_after_a_restart_each_answer_names_the_model_that_wrote_it(qtbot, open_window, home):
    window = open_window()
    send(qtbot, window, "Say hi.")
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    no_model = quick_prefs()
    no_model.model = ModelChoice(source="llama2", checkpoint=str(home / "missing.ckpt"))
    again = open_window(no_model, engine=EngineHost())             # restarted; no model gets loaded
    qtbot.waitUntil(lambda: len(again.messages.cards) == 2, timeout=10_000)   # the last conversation, shown
    qtbot.waitUntil(lambda: again.notice.kind == "load", timeout=30_000)
    assert again.engine.info is None
    assert again.messages.cards[1].speaker.text() == "<b>SmolLM2-135M-Instruct</b>"


def test_a_new_chat_gets_its_own_system_prompt_and_settings_before_its_first_message(qtbot, open_window, home):
    from app.conversation_settings import ConversationSettingsDialog

    window = open_window()
    window.session_new()

    def fill_in_and_accept() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, ConversationSettingsDialog):
            QTimer.singleShot(50, fill_in_and_accept)
            return
        dialog.use_default_prompt.setChecked(False)
        dialog.system_prompt.setPlainText("只用中文回答。")
        dialog.form.max_new_tokens.setValue(3)
        dialog.accept()
    QTimer.singleShot(50, fill_in_and_accept)
    window.edit_conversation_settings()
    assert not window.notice.isVisible()
    send(qtbot, window, "Tell me a long story about dragons.")
    answer = window.messages.cards[1].message
    assert 1 <= answer.stats["generated_tokens"] <= 3
    store = ChatStore(home / "chats.sqlite3")
    conv = store.conversation(window.session.conversation.uid)
    store.close()
    assert (conv.system_prompt, conv.settings) == ("只用中文回答。", {"max_new_tokens": 3})


def test_enter_in_another_chat_while_one_is_answered_says_which_and_the_list_marks_it(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=300))
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: window.session.conversation is not None and window.session.answering, timeout=10_000)
    busy = window.session.conversation.uid
    assert window.conversations.busy_uid() == busy and not window.conversations.list.item(0).icon().isNull()
    window.session_new()
    assert window.composer.button.text() == "Send"               # Stop belongs to the other chat
    window.composer.input.setPlainText("Meanwhile, a question.")
    window.composer.button.click()
    assert window.notice.isVisible() and f"“{LONG_QUESTION}” is still being answered" in window.notice.text()
    assert window.composer.input.toPlainText() == "Meanwhile, a question."
    assert [b.text() for b in window.notice.buttons] == ["Show it", "Stop it"]
    window.notice.buttons[1].click()                             # Stop it
    wait_idle(qtbot, window)
    assert window.conversations.busy_uid() is None and window.conversations.list.item(0).icon().isNull()
    assert not window.notice.isVisible()
    window.composer.button.click()                               # now it is sent
    wait_idle(qtbot, window)
    assert window.session.conversation.uid != busy and len(window.messages.cards) == 2


def test_a_restart_shows_the_conversation_shown_at_exit(qtbot, open_window, home):
    window = open_window()
    send(qtbot, window, "First chat.")
    window.session_new()
    send(qtbot, window, "Second chat.")
    window.conversations.select(window.conversations.list.item(1).data(UID_ROLE))   # the older one
    qtbot.waitUntil(lambda: window.title.text() == "First chat.", timeout=5000)
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    again = open_window(load_preferences(home))                  # as the app starts: its saved settings
    qtbot.waitUntil(lambda: len(again.messages.cards) == 2, timeout=10_000)
    assert again.messages.cards[0].message.content == "First chat." and again.title.text() == "First chat."


def test_a_stopped_answer_can_be_continued_from_where_it_stopped(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=40))
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2 and len(window.messages.cards[1].message.content) > 6,
                    timeout=60_000)
    window.composer.button.click()                               # Stop
    wait_idle(qtbot, window)
    card = window.messages.cards[1]
    stopped, tokens = card.message.content, card.message.stats["generated_tokens"]
    assert card.message.finish_reason == "cancelled" and card.continue_button.isVisible()
    assert not window.messages.cards[0].continue_button.isVisible()
    card.continue_button.click()
    wait_idle(qtbot, window)
    answer = window.messages.cards[1].message
    assert answer.uid == card.message.uid and len(window.messages.cards) == 2
    assert [m.uid for m in window.session.messages] == [c.message.uid for c in window.messages.cards]
    assert answer.content.startswith(stopped) and len(answer.content) > len(stopped)
    assert answer.finish_reason in ("stop", "length") and answer.stats["generated_tokens"] > tokens
    assert stored(home)[1][1:] == (answer.content, int(answer.complete), answer.finish_reason)


def test_an_answer_written_on_from_its_start_is_the_answer_the_model_writes_in_one_go(engine_host):
    """The engine's ``answer_start``: the greedy answer continued from its first tokens is the uninterrupted one."""
    from engine import GenerationSettings

    engine = engine_host.worker.engine
    question = [{"role": "user", "content": "List five colours, one per line."}]
    pieces = []
    whole = engine.chat(question, GenerationSettings(temperature=0.0, max_new_tokens=30),
                        on_token=lambda _t, text: pieces.append(text))
    assert whole.stats.generated_tokens == 30
    start = "".join(pieces[:9])
    rest = engine.chat(question, GenerationSettings(temperature=0.0, max_new_tokens=21), answer_start=start)
    assert start and start + rest.text == whole.text


def test_reading_a_long_conversation_shows_progress_time_left_and_a_reused_state(qtbot, open_window, home):
    """The card's wording of a prefill report: progress, time left, a reused state (the reports are emitted here
    while the model is held elsewhere; test_app_conversation_state.py has the engine's own)."""
    import threading

    from engine import GenerationSettings

    window = open_window(quick_prefs(max_new_tokens=40))
    busy, release = threading.Event(), threading.Event()   # the model busy elsewhere: no word comes meanwhile

    def hold_the_model() -> None:
        window.engine.worker.engine.chat([{"role": "user", "content": LONG_QUESTION}],
                                         GenerationSettings(temperature=0.0, max_new_tokens=2000),
                                         on_token=lambda _t, _text: busy.set(), cancel=release)
    holder = threading.Thread(target=hold_the_model)
    holder.start()
    try:
        busy.wait(60)
        send(qtbot, window, LONG_QUESTION, wait=False)
        qtbot.waitUntil(lambda: window.session.streaming is not None, timeout=10_000)
        uid = window.session.streaming[1].uid
        card = window.messages.card(uid)
        report = window.engine.worker.prefillProgress
        report.emit(uid, 600, 2000, True)
        assert card.footer.text() == ("Reading the conversation: 600 / 2,000 tokens · "
                                      "the saved conversation state was reused")
        qtbot.wait(300)
        report.emit(uid, 1200, 2000, True)
        left = int(card.footer.text().split("~")[1].split(" s left")[0])
        assert card.footer.text().startswith("Reading the conversation: 1,200 / 2,000 tokens, ~") and 1 <= left <= 5
        report.emit(uid, 2000, 2000, True)
        assert card.footer.text() == "Writing… · the saved conversation state was reused"
    finally:
        release.set()
        holder.join(60)
    wait_idle(qtbot, window)     # then the engine's own reports: this conversation had no saved state
    assert "tokens/s" in card.footer.text() and "reused" not in card.footer.text()
    window.engine.worker.stateCacheSize.emit(1_234_000_000)
    qtbot.waitUntil(lambda: window.status.state_cache.text() == "Saved states 1.23 GB", timeout=5000)
