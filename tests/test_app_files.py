"""The app's own files on Windows-like terms: export names Windows accepts, a settings file edited by hand,
and a settings file another program holds for a moment."""

from __future__ import annotations

import json
import threading
import time

import pytest
from app_fixtures import quick_prefs

from app.preferences import Preferences, load_preferences, preferences_path, save_preferences


@pytest.mark.parametrize("title, name", [
    ("CON", "_CON"), ("nul.txt", "_nul.txt"), ("com1", "_com1"), ("LPT9 . ", "_LPT9"), ("Com¹", "_Com¹"),
    ("What is 2 + 2?", "What is 2 + 2"), ("The end...", "The end"), ("  spaces  ", "spaces"),
    ("tab\there\x00and\x7fthere", "tab here and there"), ("长城/故宫: 哪个更老?", "长城 故宫 哪个更老"),
    ("???", "chat"), ("a" * 200, "a" * 80), ("console", "console"), ("CONFIG.md", "CONFIG.md"),
])
def test_export_file_names_avoid_what_windows_refuses(title, name):
    from app.export import safe_file_name

    assert safe_file_name(title) == name


def test_a_settings_file_with_wrong_values_falls_back_to_the_defaults_for_those(qtbot, home, app_qt):
    from app.settings_dialog import SettingsDialog

    good = quick_prefs()
    save_preferences(good, home)
    data = json.loads(preferences_path(home).read_text(encoding="utf-8"))
    data.update(theme=5, api_server="yes", api_port="8080", setup_done=True, last_conversation=None)
    data["model"].update(threads="four", context_length=-3, weight_format="int3")
    data["chat"].update(temperature="hot", top_k=True, max_new_tokens=100, seed=7.5, system_prompt="你好")
    preferences_path(home).write_text(json.dumps(data), encoding="utf-8")
    prefs = load_preferences(home)
    defaults = Preferences()
    assert (prefs.theme, prefs.api_server, prefs.api_port, prefs.last_conversation) == (
        defaults.theme, defaults.api_server, defaults.api_port, defaults.last_conversation)
    assert (prefs.model.threads, prefs.model.context_length, prefs.model.weight_format) == (0, 0, "auto")
    assert (prefs.chat.temperature, prefs.chat.top_k, prefs.chat.seed) == (
        defaults.chat.temperature, defaults.chat.top_k, defaults.chat.seed)
    assert (prefs.setup_done, prefs.chat.max_new_tokens, prefs.chat.system_prompt) == (True, 100, "你好")  # kept
    dialog = SettingsDialog(prefs)                          # every widget takes the values
    qtbot.addWidget(dialog)
    assert dialog.port.value() == defaults.api_port and dialog.generation.max_new_tokens.value() == 100
    for text in ("[1, 2]", "null", '"text"'):               # not even an object: all defaults
        preferences_path(home).write_text(text, encoding="utf-8")
        assert load_preferences(home) == Preferences()


def test_saving_settings_waits_for_a_file_another_program_holds_for_a_moment(home):
    blocker = preferences_path(home)
    blocker.mkdir()                                         # a path that cannot be replaced for now
    (blocker / "held").write_text("x")

    def let_go() -> None:
        time.sleep(0.3)
        (blocker / "held").unlink()
        blocker.rmdir()
    threading.Thread(target=let_go).start()
    prefs = quick_prefs(system_prompt="保存")
    save_preferences(prefs, home)                           # retried until it could be written
    assert load_preferences(home).chat.system_prompt == "保存"


def test_settings_that_cannot_be_saved_say_so_in_the_window(qtbot, open_window, home):
    window = open_window()
    blocker = preferences_path(home)
    blocker.unlink(missing_ok=True)
    blocker.mkdir()
    (blocker / "held").write_text("x")
    window.prefs.theme = "dark"
    window.save_prefs()
    assert "could not be written" in window.notice.text() and "another program may be using it" in window.notice.text()
    assert not blocker.with_name(blocker.name + ".tmp").exists()
