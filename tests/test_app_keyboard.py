"""The keyboard: typing goes to the message box after every button, Esc stops an answer, Enter explains itself."""

from __future__ import annotations

from app_fixtures import quick_prefs, send, wait_idle
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

LONG_QUESTION = "Count from 1 to 300, one number per line."


def _active(qtbot, window) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)


def _typing_goes_to_the_box(window) -> bool:
    return QApplication.focusWidget() is window.composer.input


def test_after_stop_regenerate_and_a_notice_button_typing_goes_to_the_message_box(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=200))
    _active(qtbot, window)
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2 and bool(window.messages.cards[1].message.content),
                    timeout=60_000)
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)     # Stop, with the mouse
    wait_idle(qtbot, window)
    assert _typing_goes_to_the_box(window)

    answer = window.messages.cards[1]
    qtbot.waitUntil(answer.regenerate_button.isVisible, timeout=5000)
    qtbot.mouseClick(answer.regenerate_button, Qt.MouseButton.LeftButton)
    assert _typing_goes_to_the_box(window)
    wait_idle(qtbot, window)

    window.notice.show_message("Something to act on", [("Do it", window.status.clearMessage)])
    qtbot.mouseClick(window.notice.buttons[0], Qt.MouseButton.LeftButton)
    assert _typing_goes_to_the_box(window)
    window.notice.show_message("Just a note")
    qtbot.mouseClick(window.notice.close_button, Qt.MouseButton.LeftButton)
    assert _typing_goes_to_the_box(window) and not window.notice.isVisible()


def test_escape_stops_the_answer(qtbot, open_window, home):
    window = open_window(quick_prefs(max_new_tokens=300))
    _active(qtbot, window)
    send(qtbot, window, LONG_QUESTION, wait=False)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2 and len(window.messages.cards[1].message.content) > 5,
                    timeout=60_000)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Escape)
    wait_idle(qtbot, window, timeout=20_000)
    answer = window.messages.cards[1].message
    assert answer.finish_reason == "cancelled" and answer.stats["generated_tokens"] < 300
    assert _typing_goes_to_the_box(window)


def test_enter_while_the_model_is_loading_says_so_and_keeps_the_text(qtbot, home, engine_host):
    from app.main_window import MainWindow, Services
    from app.storage_worker import Storage

    services = Services(Storage(home / "chats.sqlite3"), engine_host, owns_engine=False)
    window = MainWindow(quick_prefs(), home, services)
    qtbot.addWidget(window)
    window.show()
    window.start()                      # the load is asked for; its answer comes through the event loop
    assert window.engine.loading and not window.composer.property("ready")
    window.composer.input.setPlainText("Hello?")
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    assert window.notice.isVisible() and "still loading" in window.notice.text()
    assert window.composer.input.toPlainText() == "Hello?" and window.session.conversation is None
    qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=30_000)
    assert not window.notice.isVisible()    # the model is ready: the note goes, Enter now sends
    send(qtbot, window, "Hello?")
    assert [c.message.role for c in window.messages.cards] == ["user", "assistant"]
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
