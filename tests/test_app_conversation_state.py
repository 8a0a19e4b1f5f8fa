"""The app keeps each conversation's state on disk: reused after a restart, deleted with the conversation,
bounded and cleared from Settings (as are the quantized weights a load kept); and the two ways a conversation used to break (an empty answer in a
LLaMA2 chat, Stop while another request holds the model).

Real window (offscreen), real engine thread, real SQLite; the built-in model (ChatML) and, for the LLaMA2
format, the LLaMA2-shaped test checkpoint with a trained SentencePiece tokenizer.
"""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QObject, Slot

from app_fixtures import act_on_next_dialog, quick_prefs, send, stored, wait_idle
from app.storage import ChatStore, Message


def answer_cards(window):
    return [c for c in window.messages.cards if c.message.role == "assistant"]


def saved_states(home):
    folder = home / "prompt-states"
    return sorted(folder.glob("*.kvstate")) if folder.is_dir() else []


def flush(engine_host):
    assert engine_host.worker.engine.flush_states(timeout=60)


def test_a_reopened_conversation_continues_from_its_saved_state(qtbot, open_window, home, engine_host):
    window = open_window()
    send(qtbot, window, "Tell me about cats.")
    flush(engine_host)
    conv = window.session.conversation.uid
    [state] = saved_states(home)
    assert state.name.startswith(conv)
    first_prompt = answer_cards(window)[0].message.stats["prompt_tokens"]
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    engine_host.worker.engine.reset_cache()              # as after a restart: nothing in memory

    again = open_window()
    qtbot.waitUntil(lambda: again.conversations.titles() == ["Tell me about cats."], timeout=5000)
    again.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(again.messages.cards) == 2, timeout=5000)
    send(qtbot, again, "And dogs?")
    resumed = answer_cards(again)[1].message
    assert resumed.stats["cached_tokens"] > first_prompt  # the first question and its answer came from disk
    assert resumed.content.strip()

    # the same answer when everything is computed again (no state, nothing in memory)
    flush(engine_host)
    for path in saved_states(home):
        path.unlink()
    engine_host.worker.engine.reset_cache()
    answer_cards(again)[1].regenerate_button.click()
    qtbot.waitUntil(lambda: answer_cards(again)[1].message.uid != resumed.uid, timeout=5000)
    wait_idle(qtbot, again)
    fresh = answer_cards(again)[1].message
    assert fresh.stats["cached_tokens"] == 0 and fresh.content == resumed.content


class FooterRecorder(QObject):
    """What an answer's footer says at each of the engine's prefill reports (connected after the window, so
    its slot runs after the window's own, on the UI thread)."""

    def __init__(self, window):
        super().__init__(window)
        self.window, self.seen = window, []
        window.engine.worker.prefillProgress.connect(self.record)

    @Slot(str, int, int, bool)
    def record(self, uid: str, done: int, total: int, restored: bool) -> None:
        card = self.window.messages.card(uid)
        self.seen.append((done, total, restored, card.footer.text() if card is not None else None))


LONG_LIST = " ".join(f"Item {n} is a word." for n in range(1, 41)) + " Which item comes last?"


def test_the_engine_reports_reading_the_conversation_and_a_restored_state(qtbot, open_window, home, engine_host):
    """Issue 19 item 13: the card follows the engine's own prefill report; the status bar its saved states."""
    from app.status_bar import state_size_text
    from engine.generation.prompt_states import states_size

    window = open_window(quick_prefs(max_new_tokens=4))
    reports = FooterRecorder(window)
    send(qtbot, window, LONG_LIST)
    first = answer_cards(window)[0].message
    done, total, restored, footer = reports.seen[0]
    computed = first.stats["prompt_tokens"] - first.stats.get("cached_tokens", 0)   # (the last chat's common start)
    assert (done, total, restored) == (0, computed, False) and total > 250
    assert footer == f"Reading the conversation: 0 / {total} tokens"
    between = [f for d, _, _, f in reports.seen if 0 < d < total]
    assert between and all(f.startswith("Reading the conversation: ") and f"/ {total} tokens" in f for f in between)
    assert reports.seen[-1][:3] == (total, total, False)
    assert "reused" not in answer_cards(window)[0].footer.text()
    qtbot.waitUntil(lambda: bool(saved_states(home)), timeout=30_000)
    on_disk = f"Saved states {state_size_text(states_size(home / 'prompt-states'))}"
    assert on_disk.endswith(" MB") and not on_disk.endswith(" 0.0 MB")       # the small model's: megabytes
    qtbot.waitUntil(lambda: window.status.state_cache.text() == on_disk, timeout=30_000)

    engine_host.worker.engine.reset_cache()              # as after a restart: only the state on disk
    reports.seen.clear()
    send(qtbot, window, "And the first?")
    second = answer_cards(window)[1]
    _, fresh, restored, _ = reports.seen[0]
    assert restored and 0 < fresh <= second.message.stats["prompt_tokens"] - total   # the long list came from disk
    assert second.message.stats["state_reused"]
    assert "the saved conversation state was reused" in second.footer.text()


def test_regenerate_and_edit_reuse_what_is_cached(qtbot, open_window, home):
    window = open_window()
    send(qtbot, window, "What is 2 + 2?")
    send(qtbot, window, "And 3 + 3?")
    second = answer_cards(window)[1]
    second.regenerate_button.click()
    qtbot.waitUntil(lambda: answer_cards(window)[1].message.uid != second.message.uid, timeout=5000)
    wait_idle(qtbot, window)
    again = answer_cards(window)[1].message.stats
    assert again["cached_tokens"] >= again["prompt_tokens"] - 1     # the whole question was cached
    window.messages.cards[2].edit_button.click()                   # edit the second question
    window.messages.cards[2].editor.setPlainText("And 4 + 4?")
    window.messages.cards[2].edit_send.click()
    qtbot.waitUntil(lambda: len(window.messages.cards) == 4 and window.session.answering, timeout=5000)
    wait_idle(qtbot, window)
    edited = answer_cards(window)[1].message.stats
    assert edited["cached_tokens"] >= answer_cards(window)[0].message.stats["prompt_tokens"]  # the first turn


def test_deleting_a_conversation_deletes_its_saved_state(qtbot, open_window, home, engine_host):
    window = open_window()
    send(qtbot, window, "Say hello.")
    flush(engine_host)
    uid = window.session.conversation.uid
    assert saved_states(home)
    qtbot.waitUntil(lambda: window.status.state_cache.text().startswith("Saved states "), timeout=10_000)
    window.delete(uid)
    qtbot.waitUntil(lambda: not saved_states(home), timeout=10_000)
    qtbot.waitUntil(lambda: window.status.state_cache.text() == "", timeout=10_000)    # at once, not at the next answer


def test_settings_show_the_saved_states_and_clear_them(qtbot, open_window, home, engine_host):
    """Clear empties the folder and the status bar's figure at once (also when Settings closes right after)."""
    from app.settings_dialog import SettingsDialog

    window = open_window()
    send(qtbot, window, "Say hello.")
    flush(engine_host)
    status = window.status.state_cache
    qtbot.waitUntil(lambda: status.text().startswith("Saved states "), timeout=10_000)

    def clear(dialog) -> None:
        assert dialog.states_limit.value() == 4.0                    # the default limit, 4 GB
        qtbot.waitUntil(lambda: dialog.states_used.text().endswith("MB used"), timeout=10_000)
        assert dialog.states_clear.isEnabled() and dialog.states_used.text() != "0.0 MB used"
        dialog.states_clear.click()
        qtbot.waitUntil(lambda: dialog.states_used.text() == "0.0 MB used", timeout=10_000)
        assert not saved_states(home) and not dialog.states_clear.isEnabled()
        assert status.text() == ""                                   # the dialog is still open
        dialog.states_limit.setValue(0.5)
        assert dialog.result_prefs().saved_states_gb == 0.5
    act_on_next_dialog(SettingsDialog, clear)
    window.open_general_settings()

    send(qtbot, window, "Say hello again.")
    flush(engine_host)
    qtbot.waitUntil(lambda: status.text().startswith("Saved states "), timeout=10_000)

    def clear_and_close(dialog) -> None:
        qtbot.waitUntil(lambda: dialog.states_clear.isEnabled(), timeout=10_000)
        dialog.states_clear.click()                                  # and closed before the files are gone
    act_on_next_dialog(SettingsDialog, clear_and_close)
    window.open_general_settings()
    qtbot.waitUntil(lambda: status.text() == "" and not saved_states(home), timeout=10_000)


def test_settings_show_the_kept_quantized_weights_and_clear_them(qtbot, home, monkeypatch):
    """A real int4 load keeps its weights in the user-data folder; Settings shows their size, Clear deletes them."""
    import model_factory as mf
    from fixtures import make_executor

    from app.preferences import Preferences
    from app.settings_dialog import SettingsDialog
    from engine.backends.cpu import weight_cache
    from engine.paths import quantized_weights_dir

    monkeypatch.setenv(weight_cache.LIMIT_ENV, "16")
    ckpt, yml, _ = mf.cached_model(mf.ONE_LAYER_GQA)
    make_executor("cpu", ckpt, yml, weight_format="int4").close()
    (kept,) = quantized_weights_dir().iterdir()
    dialog = SettingsDialog(Preferences())
    qtbot.addWidget(dialog)
    shown = f"{kept.stat().st_size / 1e6:.1f} MB used"
    qtbot.waitUntil(lambda: dialog.weights_used.text() == shown, timeout=10_000)
    assert dialog.weights_clear.isEnabled()
    dialog.weights_clear.click()
    qtbot.waitUntil(lambda: dialog.weights_used.text() == "0.0 MB used", timeout=10_000)
    assert not kept.exists() and not dialog.weights_clear.isEnabled()
    dialog.reject()


def test_the_settings_limit_of_kept_weights_goes_with_the_load_and_a_lower_one_trims_at_once(
        qtbot, app_qt, open_window, home, llama2_tiny, spm_model):
    """Settings > General > Quantized weights: its limit reaches the engine with the load (the tests' environment
    turns the cache off: the setting wins), and lowering it to Off deletes what was kept at once."""
    from app.engine_worker import EngineHost
    from app.preferences import ModelChoice
    from app.settings_dialog import SettingsDialog
    from engine.paths import quantized_weights_dir

    ckpt, yml, _, _ = llama2_tiny
    host = EngineHost()
    host.weights_gb = 16.0
    host.load(ModelChoice(source="llama2", checkpoint=str(ckpt), tokenizer=str(spm_model), config=str(yml),
                          backend="cpu", weight_format="int4", template="llama2"))
    qtbot.waitUntil(lambda: host.info is not None or not host.loading, timeout=300_000)
    assert host.info is not None and host.info.weight_format.endswith("q4_k")       # quantized at this load
    (kept,) = quantized_weights_dir().glob("*.qweights")
    prefs = quick_prefs()
    prefs.model, prefs.quantized_weights_gb = host.worker.choice, 16.0
    window = open_window(prefs, engine=host)

    chosen = []

    def lower(dialog) -> None:
        assert dialog.weights_limit.value() == 16.0
        dialog.weights_limit.setValue(0.0)
        assert dialog.weights_limit.text() == "Off"
        chosen.append(dialog.result_prefs())
    act_on_next_dialog(SettingsDialog, lower)
    window.open_general_settings()
    assert host.weights_gb == 16.0 and chosen[0].quantized_weights_gb == 0.0
    window.apply_prefs(chosen[0])                                       # what OK does with them
    assert host.weights_gb == 0.0 and window.prefs.quantized_weights_gb == 0.0
    qtbot.waitUntil(lambda: not kept.exists(), timeout=10_000)
    assert host.info is not None                                        # the model stays loaded


def test_the_size_limit_is_applied_to_what_is_saved(qtbot, open_window, home, engine_host):
    prefs = quick_prefs()
    prefs.saved_states_gb = 0.000_01                                 # 10 kB: less than one state
    window = open_window(prefs)
    send(qtbot, window, "Say hello.")
    flush(engine_host)
    assert not saved_states(home)
    prefs.saved_states_gb = 0                                         # "Off"
    send(qtbot, window, "Again.")
    flush(engine_host)
    assert not saved_states(home)


# -- the two ways a conversation used to break ----------------------------------------------------------

@pytest.fixture
def llama2_host(app_qt, llama2_tiny, spm_model, home):
    """The LLaMA2-shaped test checkpoint on its own engine thread, in the LLaMA2 chat format."""
    from app.engine_worker import EngineHost
    from app.preferences import ModelChoice

    ckpt, yml, _, _ = llama2_tiny
    host = EngineHost()
    host.load(ModelChoice(source="llama2", checkpoint=str(ckpt), tokenizer=str(spm_model), config=str(yml),
                          backend="cpu", template="llama2"))
    deadline = time.monotonic() + 300
    while host.info is None and host.loading and time.monotonic() < deadline:
        app_qt.processEvents()
        time.sleep(0.01)
    assert host.info is not None and host.info.template == "llama2-chat"
    return host


def llama2_prefs(host):
    """Settings that keep the window on the LLaMA2-shaped model (it is loaded already: no reload)."""
    prefs = quick_prefs(max_new_tokens=4)
    prefs.model = host.worker.choice
    return prefs


def _conversation_with(home, uid, messages):
    store = ChatStore(home / "chats.sqlite3")
    store.create_conversation(uid, uid)
    store.add_messages(uid, [Message(f"{uid}{i}", role, text, time.time(), complete, reason)
                             for i, (role, text, complete, reason) in enumerate(messages)])
    store.close()


@pytest.mark.parametrize("empty_reason", ["cancelled", "error"])
def test_an_empty_answer_never_breaks_a_llama2_conversation(qtbot, open_window, home, llama2_host, empty_reason):
    """Q1 answered with nothing (stopped before the first token, or failed), then Q2: it is answered."""
    _conversation_with(home, "chat", [("user", "hello there", True, None), ("assistant", "", False, empty_reason)])
    window = open_window(llama2_prefs(llama2_host), engine=llama2_host)
    qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=60_000)
    qtbot.waitUntil(lambda: window.conversations.titles() == ["chat"], timeout=5000)
    window.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 2, timeout=5000)
    send(qtbot, window, "are you there?")
    assert window.engine.info.template == "llama2-chat"               # still the LLaMA2-shaped model
    assert stored(home)[-1][3] in ("stop", "length", "stop_string"), stored(home)
    assert not window.notice.isVisible() or "alternate" not in window.notice.text()


def test_regenerate_recovers_a_llama2_conversation_broken_by_an_empty_answer(qtbot, open_window, home, llama2_host):
    """Stopped empty, then a second question that failed (as the old app did): Regenerate now answers it."""
    _conversation_with(home, "broken", [("user", "hello there", True, None), ("assistant", "", False, "cancelled"),
                                        ("user", "are you there?", True, None), ("assistant", "", False, "error")])
    window = open_window(llama2_prefs(llama2_host), engine=llama2_host)
    qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=60_000)
    qtbot.waitUntil(lambda: window.conversations.titles() == ["broken"], timeout=5000)
    window.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(window.messages.cards) == 4, timeout=5000)
    answer_cards(window)[-1].regenerate_button.click()
    qtbot.waitUntil(lambda: window.session.answering, timeout=5000)
    wait_idle(qtbot, window)
    assert window.engine.info.template == "llama2-chat"
    assert stored(home)[-1][0] == "assistant" and stored(home)[-1][3] in ("stop", "length", "stop_string")


def test_stop_while_another_request_holds_the_model_ends_the_answer_as_stopped(qtbot, open_window, home,
                                                                             engine_host):
    window = open_window()
    engine = engine_host.worker.engine
    hold, done = threading.Event(), threading.Event()

    def busy():  # another client (the local API, say) keeps the model for a while
        from engine import GenerationSettings
        try:
            engine.complete_ids([1, 2, 3], GenerationSettings(greedy=True, max_new_tokens=400), cancel=hold)
        finally:
            done.set()
    threading.Thread(target=busy, daemon=True).start()
    qtbot.waitUntil(lambda: engine.busy, timeout=10_000)
    send(qtbot, window, "Hello?", wait=False)
    qtbot.waitUntil(lambda: engine_host.answering is not None, timeout=10_000)
    time.sleep(0.3)                                                   # the request now waits for the model
    window.composer.button.click()                                    # Stop
    wait_idle(qtbot, window, timeout=30_000)
    hold.set()
    assert done.wait(60)
    answer = answer_cards(window)[0]
    assert "Stopped" in answer.footer.text()
    assert stored(home)[1][2:] == (0, "cancelled")
    assert "error" not in answer.message.stats
