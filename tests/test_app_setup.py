"""Choosing a model, errors shown as the engine words them, settings, downloads, Chinese UI and data."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from app_fixtures import quick_prefs, send, stored, wait_idle
from download_server import Behaviour, DownloadServer, payload, sha256
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from app import translations
from app.engine_worker import EngineHost
from app.preferences import ModelChoice, load_preferences

ZH_QUESTION = "长城有多长？请用中文回答。"


def test_a_missing_checkpoint_shows_the_engines_own_message(qtbot, open_window, home):
    from engine import EngineError, ModelSource, check_model_files

    missing = home / "模型" / "llama2_7b.ckpt"
    prefs = quick_prefs()
    prefs.model = ModelChoice(source="llama2", checkpoint=str(missing))
    with pytest.raises(EngineError) as expected:  # the independent truth: what the engine says
        check_model_files(ModelSource(version=2, checkpoint=missing))
    window = open_window(prefs, engine=EngineHost())  # its own engine thread: nothing gets loaded
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=30_000)
    text = window.notice.text()
    assert text.startswith(str(expected.value)) and str(missing) in text
    assert "Traceback" not in text
    titles = [b.text() for b in window.notice.buttons]
    assert "Use the built-in model" in titles and "Model settings…" in titles
    assert window.status.model.text() == "No model loaded"
    assert not window.composer.button.isEnabled()


def test_a_damaged_checkpoint_is_refused_with_the_engines_message(qtbot, open_window, home):
    from engine import EngineError, ModelSource, check_model_files

    damaged = home / "llama2_7b.ckpt"
    damaged.write_bytes(b"\x0a\x05hello" + os.urandom(2000))
    prefs = quick_prefs()
    prefs.model = ModelChoice(source="llama2", checkpoint=str(damaged))
    with pytest.raises(EngineError) as expected:
        check_model_files(ModelSource(version=2, checkpoint=damaged))
    window = open_window(prefs, engine=EngineHost())
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=30_000)
    assert window.notice.text().startswith(str(expected.value))


def test_the_first_run_dialog_offers_the_llama_files_and_is_answered_once(qtbot, home, engine_host, app_qt):
    from app.application import Application
    from app.main_window import Services
    from app.storage_worker import Storage

    prefs = quick_prefs()
    prefs.setup_done = False
    services = Services(Storage(home / "chats.sqlite3"), engine_host, owns_engine=False)
    application = Application(app_qt, prefs, home, services)
    window = application.show()
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: application.first_run_dialog is not None and application.first_run_dialog.isVisible())
    dialog = application.first_run_dialog
    form = dialog.form
    form.source.setCurrentIndex(form.source.findData("llama3"))
    assert form.checkpoint.isEnabled() and form.downloads.isVisible()
    assert form.checkpoint.edit.placeholderText().endswith("llama3-8B.ckpt")
    assert "LLaMA3" in form.download.title.text()
    dialog.keep.click()
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert load_preferences(home).setup_done is True
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)


def test_the_download_panel_shows_progress_pauses_and_finishes(qtbot, home, tmp_path, monkeypatch):
    from app.download_panel import DownloadPanel

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("LLAMA_DESK_MODELS_DIR", str(tmp_path / "模型"))
    data = payload(1_500_000)
    behaviour = Behaviour(files={"/llama2_7b.ckpt": data}, bytes_per_s=600_000)
    with DownloadServer(behaviour) as url:
        manifest = tmp_path / "models.yaml"
        manifest.write_text(yaml.safe_dump({"models": {"llama2": {
            "description": "test", "folder": "llama2", "files": [
                {"name": "llama2_7b.ckpt", "size": len(data), "sha256": sha256(data),
                 "mirrors": [f"{url}/llama2_7b.ckpt"]}]}}}), encoding="utf-8")
        panel = DownloadPanel()
        qtbot.addWidget(panel)
        panel.manifest = manifest
        panel.set_model("llama2")
        assert str(tmp_path / "模型" / "llama2") in panel.title.text()
        panel.start_button.click()
        qtbot.waitUntil(lambda: "llama2_7b.ckpt:" in panel.detail.text() and "/s" in panel.detail.text(),
                        timeout=20_000)
        panel.pause_button.click()
        assert panel.pause_button.text() == "Resume"
        qtbot.waitUntil(lambda: "paused" in panel.detail.text(), timeout=20_000)
        panel.pause_button.click()
        with qtbot.waitSignal(panel.downloaded, timeout=60_000) as done:
            pass
    assert done.args == ["llama2"]
    assert panel.detail.text().startswith("Done: 1 file(s) verified")
    assert (tmp_path / "模型" / "llama2" / "llama2_7b.ckpt").read_bytes() == data


def test_the_models_folder_chosen_in_settings_is_where_downloads_go_and_the_engine_looks(qtbot, app_qt, tmp_path,
                                                                                          monkeypatch):
    from app.settings_dialog import SettingsDialog
    from engine import paths

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path / "home 家"))
    monkeypatch.delenv("LLAMA_DESK_MODELS_DIR", raising=False)
    chosen = tmp_path / "D盘" / "模型"
    data = payload(300_000)
    with DownloadServer(Behaviour(files={"/llama2_7b.ckpt": data})) as url:
        manifest = tmp_path / "models.yaml"
        manifest.write_text(yaml.safe_dump({"models": {"llama2": {"description": "test", "folder": "llama2", "files": [
            {"name": "llama2_7b.ckpt", "mirrors": [f"{url}/llama2_7b.ckpt"]}]}}}), encoding="utf-8")
        dialog = SettingsDialog(quick_prefs(), page="model")
        qtbot.addWidget(dialog)
        form = dialog.model
        form.source.setCurrentIndex(form.source.findData("llama2"))
        assert form.models_folder.text() == "" and form.models_folder.edit.placeholderText() == str(
            paths.default_models_dir())
        form.models_folder.edit.setText(str(chosen))  # what Browse… fills in
        checkpoint = chosen / "llama2" / "llama2_7b.ckpt"
        assert form.checkpoint.edit.placeholderText() == str(checkpoint)
        assert str(checkpoint.parent) in form.download.title.text()
        form.download.manifest = manifest
        with qtbot.waitSignal(form.download.downloaded, timeout=60_000):
            form.download.start_button.click()
    assert checkpoint.read_bytes() == data
    assert paths.models_dir() == chosen  # kept when the download started: the engine must find what went there
    # the form checks the new files at once: the engine opened the one in the chosen folder (random bytes: refused)
    qtbot.waitUntil(lambda: form.check_button.isEnabled() and str(checkpoint) in form.result.text(), timeout=60_000)
    form.models_folder.edit.setText("")  # back to the default, when the dialog is accepted
    assert paths.models_dir() == chosen
    dialog.accept()
    assert paths.models_dir() == paths.default_models_dir()


def test_settings_theme_and_the_api_switch(qtbot, open_window, home):
    from app.settings_dialog import SettingsDialog

    window = open_window()
    dialog = SettingsDialog(window.prefs, window)
    qtbot.addWidget(dialog)
    assert dialog.api.isEnabled() and not dialog.api.isChecked()
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.generation.max_new_tokens.setValue(7)
    window.apply_prefs(dialog.result_prefs())
    window_colour = QApplication.palette().color(QPalette.ColorRole.Window)
    assert window_colour.lightness() < 80
    saved = json.loads((home / "settings.json").read_text(encoding="utf-8"))
    assert saved["theme"] == "dark" and saved["chat"]["max_new_tokens"] == 7
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    window.apply_prefs(dialog.result_prefs())
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 200


def test_the_api_switch_serves_the_loaded_model_to_other_programs(qtbot, open_window, home):
    """Settings > Local API server: an OpenAI client on this computer gets answers from the app's model."""
    import urllib.request

    from app.settings_dialog import SettingsDialog

    window = open_window()
    dialog = SettingsDialog(window.prefs, window)
    qtbot.addWidget(dialog)
    dialog.api.setChecked(True)
    prefs = dialog.result_prefs()
    prefs.api_port = 0  # any free port: the address is shown once the server runs
    window.apply_prefs(prefs)
    qtbot.waitUntil(lambda: window.api_address.startswith("http://127.0.0.1:"), timeout=30_000)
    body = json.dumps({"messages": [{"role": "user", "content": "What is the capital of France?"}],
                       "temperature": 0, "max_tokens": 12}).encode()
    request = urllib.request.Request(window.api_address + "/chat/completions", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        answer = json.loads(reply.read())["choices"][0]["message"]["content"]
    assert "Paris" in answer
    off = dialog.result_prefs()
    off.api_server = False
    window.apply_prefs(off)
    qtbot.waitUntil(lambda: window.api_address == "", timeout=30_000)


def test_the_local_api_server_follows_the_model_it_serves(qtbot, app_qt, monkeypatch):
    """Asked for before any model is loaded, the server starts with the model (loaded to answer two requests in
    one step); it stops when the model goes."""
    import urllib.error
    import urllib.request

    from app.api_controller import API_STREAMS
    from app_fixtures import LOAD_TIMEOUT_S, MODEL_HOME, shared_model

    monkeypatch.setenv("LLAMA_DESK_HOME", str(MODEL_HOME))  # the built-in model's conversion is there already
    host = EngineHost()
    try:
        host.set_api_server(True, 0)  # any free port
        with qtbot.waitSignal(host.api.state, timeout=LOAD_TIMEOUT_S * 1000) as started:
            host.load(shared_model())
        running, url = started.args
        qtbot.waitUntil(lambda: host.info is not None)  # the state comes from the engine thread, info on ours
        assert running and url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/models", timeout=60) as reply:
            assert json.loads(reply.read())["data"][0]["id"] == host.info.model_id
        # loaded with a KV cache for the app's chat and one more for a client: they answer in the same steps
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=60) as reply:
            assert json.loads(reply.read())["parallel"] == API_STREAMS == 2
    finally:
        assert host.shutdown(60_000)
    with pytest.raises(urllib.error.URLError):  # stopped with its model
        urllib.request.urlopen(url + "/models", timeout=5)


def test_the_local_api_server_can_require_a_key(qtbot, app_qt, monkeypatch):
    """Settings' API key (preferences.api_key): programs on this computer must send it."""
    import urllib.error
    import urllib.request

    from app_fixtures import LOAD_TIMEOUT_S, MODEL_HOME, shared_model

    monkeypatch.setenv("LLAMA_DESK_HOME", str(MODEL_HOME))
    host = EngineHost()
    try:
        host.set_api_server(True, 0, "my local key")
        with qtbot.waitSignal(host.api.state, timeout=LOAD_TIMEOUT_S * 1000) as started:
            host.load(shared_model())
        running, url = started.args
        qtbot.waitUntil(lambda: host.info is not None)
        assert running
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/models", timeout=60)
        assert refused.value.code == 401
        asked = urllib.request.Request(url + "/models", headers={"Authorization": "Bearer my local key"})
        with urllib.request.urlopen(asked, timeout=60) as reply:
            assert json.loads(reply.read())["data"][0]["id"] == host.info.model_id
    finally:
        assert host.shutdown(60_000)


def test_answers_at_once_is_a_setting_the_next_model_loads_with(qtbot, open_window, home, monkeypatch):
    """Settings > API > Answers at once (1-4, default 2): saved, and the model loaded next has that many KV caches
    (the one loaded already keeps its own); the server's /health reports them."""
    import urllib.request

    from app.model_catalog import builtin_entry
    from app.models_page import memory_text
    from app.settings_dialog import SettingsDialog
    from app_fixtures import MODEL_HOME

    def parallel(address: str) -> int:
        with urllib.request.urlopen(address.removesuffix("/v1") + "/health", timeout=60) as reply:
            return json.loads(reply.read())["parallel"]

    monkeypatch.setenv("LLAMA_DESK_HOME", str(MODEL_HOME))   # the built-in model's conversion is there already
    window = open_window(engine=EngineHost())                  # its own model: the shared one keeps one cache
    qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=900_000)
    dialog = SettingsDialog(window.prefs, window)
    qtbot.addWidget(dialog)
    assert dialog.api_streams.value() == 2 and (dialog.api_streams.minimum(), dialog.api_streams.maximum()) == (1, 4)
    dialog.api.setChecked(True)
    dialog.api_streams.setValue(3)
    prefs = dialog.result_prefs()
    prefs.api_port = 0
    window.apply_prefs(prefs)
    qtbot.waitUntil(lambda: window.api_address.startswith("http://127.0.0.1:"), timeout=30_000)
    assert parallel(window.api_address) == 1                   # loaded before: as it was
    assert json.loads((home / "settings.json").read_text(encoding="utf-8"))["api_streams"] == 3
    first = window.api_address
    window.load_model(window.prefs.model)                      # loaded again: with 3 caches
    qtbot.waitUntil(lambda: window.api_address not in ("", first), timeout=900_000)
    assert parallel(window.api_address) == 3
    # the memory the Models page shows before loading counts a KV cache per answer (the built-in model's, converted)
    entry = builtin_entry()
    assert entry.plan.kv_cache > 0
    assert entry.plan.total("auto", 3) - entry.plan.total("auto", 1) == 2 * entry.plan.kv_cache
    assert memory_text(entry, None, 3) != memory_text(entry, None, 1)


def test_lookup_decoding_is_a_setting_of_answers(qtbot, open_window, home):
    """Settings > Answers > Lookup decoding: saved, and the next answer checks guesses (or not); same answer."""
    from app.settings_dialog import SettingsDialog

    quote = ("Repeat this sentence exactly: The Great Wall of China is a series of fortifications built across the "
             "historical northern borders of ancient Chinese states.")
    window = open_window(quick_prefs(max_new_tokens=30))
    answers = {}
    for mode in ("on", "off"):
        dialog = SettingsDialog(window.prefs, window, page="answers")
        qtbot.addWidget(dialog)
        assert dialog.generation.lookup.currentData() == ("auto" if mode == "on" else "on")
        dialog.generation.lookup.setCurrentIndex(dialog.generation.lookup.findData(mode))
        window.apply_prefs(dialog.result_prefs())
        assert json.loads((home / "settings.json").read_text(encoding="utf-8"))["chat"]["lookup"] == mode
        window.session_new()
        send(qtbot, window, quote)
        card = window.messages.cards[-1]
        answers[mode] = card.body.source_text
        assert (card.message.stats["accepted_tokens"] > 0) == (mode == "on")
    assert answers["on"] == answers["off"]


def test_conversation_settings_change_the_next_answer(qtbot, open_window, home):
    from app.conversation_settings import ConversationSettingsDialog

    window = open_window()
    send(qtbot, window, "Say hello.")
    conv = window.session.conversation
    dialog = ConversationSettingsDialog(conv, window.prefs.chat, window)
    qtbot.addWidget(dialog)
    dialog.use_default_prompt.setChecked(False)
    dialog.system_prompt.setPlainText("你是一个乐于助人的助手。")
    dialog.form.max_new_tokens.setValue(3)
    prompt, overrides = dialog.values()
    assert prompt == "你是一个乐于助人的助手。" and overrides == {"max_new_tokens": 3}
    window.set_conversation_settings(prompt, overrides)
    send(qtbot, window, "Tell me a long story about dragons.")
    last = window.messages.cards[-1]
    generated = last.message.stats["generated_tokens"]
    assert 1 <= generated <= 3 and f"{generated} token" in last.footer.text()
    from app.storage import ChatStore
    store = ChatStore(home / "chats.sqlite3")
    assert store.conversation(conv.uid).system_prompt == "你是一个乐于助人的助手。"
    assert store.conversation(conv.uid).settings == {"max_new_tokens": 3}


@pytest.fixture
def chinese_ui(app_qt):
    assert translations.install(app_qt, "zh_CN") == "zh_CN"
    yield
    translations.install(app_qt, "en")


def test_the_chinese_ui_and_a_chinese_conversation_survive_save_load_export(qtbot, chinese_ui, open_window, home):
    window = open_window()
    assert window.composer.button.text() == "发送"
    assert window.conversations.new_button.text() == "新对话"
    assert [a.text() for a in window.menuBar().actions()][:2] == ["对话(&C)", "设置(&S)"]
    send(qtbot, window, ZH_QUESTION)
    question, answer = window.messages.cards
    assert question.body.toPlainText() == ZH_QUESTION
    assert question.copy_button.text() == "复制"
    assert "词元" in answer.footer.text()  # "tokens", in Chinese
    assert stored(home)[0][1] == ZH_QUESTION
    uid = window.session.conversation.uid

    folder = home / "导出"
    folder.mkdir()
    for name in ("长城.md", "长城.json"):
        window.export(uid, str(folder / name))
    qtbot.waitUntil(lambda: (folder / "长城.json").exists() and (folder / "长城.md").exists(), timeout=10_000)
    assert f"## User\n\n{ZH_QUESTION}" in (folder / "长城.md").read_text(encoding="utf-8")
    exported = json.loads((folder / "长城.json").read_text(encoding="utf-8"))
    assert exported["conversation"]["title"] == ZH_QUESTION[:len(exported["conversation"]["title"])]
    assert exported["messages"][0] == {"role": "user", "content": ZH_QUESTION}
    assert exported["messages"][1]["content"] == answer.body.source_text

    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    again = open_window()
    qtbot.waitUntil(lambda: again.conversations.titles() == [ZH_QUESTION], timeout=10_000)
    with qtbot.waitSignal(again.conversations.searchChanged, timeout=5000):   # the search is debounced
        again.conversations.search.setText("长城")
    wait_idle(qtbot, again)              # its answer from the history's thread is in (requests run in order)
    assert again.conversations.titles() == [ZH_QUESTION]
    again.conversations.search.setText("不存在的内容")
    qtbot.waitUntil(lambda: again.conversations.titles() == [], timeout=5000)
    again.conversations.search.setText("")
    qtbot.waitUntil(lambda: again.conversations.titles() == [ZH_QUESTION], timeout=5000)
    again.conversations.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(again.messages.cards) == 2, timeout=5000)
    assert again.messages.cards[0].body.toPlainText() == ZH_QUESTION
    assert again.messages.cards[1].body.source_text == answer.body.source_text


def test_switching_the_language_rebuilds_the_window_on_the_same_conversation(qtbot, home, engine_host, app_qt):
    from shiboken6 import isValid

    from app.application import Application
    from app.main_window import Services
    from app.storage_worker import Storage

    services = Services(Storage(home / "chats.sqlite3"), engine_host, owns_engine=False)
    application = Application(app_qt, quick_prefs(), home, services)
    window = application.show()
    try:
        qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=30_000)
        send(qtbot, window, "Hi")
        assert window.composer.button.text() == "Send"
        new_prefs = copy.deepcopy(window.prefs)
        new_prefs.language = "zh_CN"
        window.apply_prefs(new_prefs)
        qtbot.waitUntil(lambda: application.window is not window, timeout=10_000)
        chinese = application.window
        assert chinese.isVisible() and chinese.composer.button.text() == "发送"
        qtbot.waitUntil(lambda: len(chinese.messages.cards) == 2, timeout=10_000)
        assert chinese.messages.cards[0].body.toPlainText() == "Hi"
        assert chinese.messages.cards[0].copy_button.text() == "复制"
        qtbot.waitUntil(lambda: not isValid(window) or not window.isVisible(), timeout=5000)
        assert load_preferences(home).language == "zh_CN"
    finally:
        translations.install(app_qt, "en")
        current = application.window
        current.close()
        qtbot.waitUntil(lambda: not current.isVisible(), timeout=30_000)


TS = Path(__file__).resolve().parent.parent / "app" / "i18n" / "llama_desk_zh_CN.ts"


def test_every_ui_string_has_a_chinese_translation_and_the_qm_is_current():
    from app.i18n.update import tool

    work = Path(tempfile.mkdtemp(prefix="i18n-"))
    try:
        fresh = work / TS.name
        shutil.copy(TS, fresh)
        app_dir = TS.parent.parent
        sources = sorted(str(p.relative_to(app_dir)) for p in app_dir.glob("*.py"))
        subprocess.run([tool("pyside6-lupdate"), *sources, "-no-obsolete", "-locations", "none", "-ts", str(fresh)],
                       check=True, cwd=app_dir, capture_output=True)
        text = fresh.read_text(encoding="utf-8")
        assert 'type="unfinished"' not in text, "UI strings without a translation: run python app/i18n/update.py"
        assert "<name></name>" not in text, "a tr() string outside a class: use QCoreApplication.translate(context, ...)"
        assert text == TS.read_text(encoding="utf-8"), "the .ts is out of date: run python app/i18n/update.py"
        subprocess.run([tool("pyside6-lrelease"), str(fresh), "-qm", str(work / "fresh.qm")], check=True,
                       capture_output=True)
        assert (work / "fresh.qm").read_bytes() == TS.with_suffix(".qm").read_bytes(), "rebuild the .qm"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_ui_font_has_chinese_glyphs(app_qt):
    from PySide6.QtGui import QFont, QFontDatabase, QFontMetrics

    from app.theme import ui_font_families

    families = ui_font_families()
    if not any(QFontDatabase.writingSystems(f).count(QFontDatabase.WritingSystem.SimplifiedChinese)
               for f in QFontDatabase.families()):
        pytest.skip("no CJK font on this machine (Debian: apt-get install fonts-wqy-microhei)")
    cjk = [f for f in families if QFontDatabase.WritingSystem.SimplifiedChinese in QFontDatabase.writingSystems(f)]
    assert cjk, f"the app's font families {families} have no Chinese font"
    assert cjk[0] in app_qt.font().families()
    metrics = QFontMetrics(QFont(cjk[0]))
    assert all(metrics.inFontUcs4(ord(ch)) for ch in "长城你好")
