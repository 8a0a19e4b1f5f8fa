"""The Models page, the model picker and the first-run dialog: what each model is and needs, against this PC;
downloads checked before their first byte; remove; add; switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from app_fixtures import act_on_next_dialog, press_on_next_message_box, quick_prefs
from download_server import Behaviour, DownloadServer, payload
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.model_catalog import choice_to_run, download_check, free_disk_bytes, plan_memory, total_ram_bytes
from app.preferences import ModelChoice, Preferences
from engine import paths

GB = 10 ** 9
# Published facts (not our arithmetic): parameters, and the fp16 KV cache per token
# (LLaMA2-7b: 32 layers x 32 KV heads x 128 x 2 x 2 bytes = 512 KiB; LLaMA3-8b, 8 KV heads: 128 KiB)
PARAMETERS = {"llama2": 6.74e9, "llama3": 8.03e9}
EMBEDDING = {"llama2": 32000 * 4096, "llama3": 128256 * 4096}   # vocabulary x hidden size; only rows seen are read
KV_PER_TOKEN = {"llama2": 512 * 1024, "llama3": 128 * 1024}
CONTEXT = {"llama2": 4096, "llama3": 8192}


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "模型 D盘"
    monkeypatch.setenv("LLAMA_DESK_MODELS_DIR", str(folder))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return folder


def _gb_before(text: str, words: str) -> float:
    """The number of GB written just before ``words``: '52.4 GB free' -> 52.4."""
    return float(text.split(words)[0].split()[-1])


def _row(dialog, key: str) -> int:
    return [e.key for e in dialog.entries].index(key)


def _cells(dialog, key: str) -> list[str]:
    row = _row(dialog, key)
    return [dialog.table.item(row, c).text() for c in range(dialog.table.columnCount())]


def test_the_models_page_shows_each_models_kind_format_size_memory_and_place(qtbot, open_window, home, models_folder):
    from app.models_page import ModelsDialog

    window = open_window()
    dialog = ModelsDialog(window.prefs, window.engine.choice, window)
    qtbot.addWidget(dialog)
    dialog.show()
    assert [e.key for e in dialog.entries] == ["builtin", "llama2-hf", "llama3-hf", "llama2", "llama3"]  # chat first
    assert _cells(dialog, "llama3-hf")[1:3] == ["chat", "bf16 safetensors"]
    assert _cells(dialog, "llama2")[1:3] == ["base: continues text", "fp16 .ckpt (MindSpore)"]
    assert _cells(dialog, "llama3")[5] == str(models_folder / "llama3")
    for key in ("llama2", "llama3"):
        entry = dialog.entries[_row(dialog, key)]
        assert abs(entry.download_bytes - 2 * PARAMETERS[key]) < 0.01 * 2 * PARAMETERS[key]   # 16-bit weights
        in_memory = 2 * (PARAMETERS[key] - EMBEDDING[key])
        assert abs(entry.plan.stored - in_memory) < 0.01 * in_memory
        assert entry.plan.kv_cache == KV_PER_TOKEN[key] * CONTEXT[key]
        assert entry.plan.int8 < 0.55 * entry.plan.stored
        assert f"{entry.plan.total() / GB:.1f} GB as stored" in _cells(dialog, key)[4]
    ram = total_ram_bytes()
    assert f"This PC: {ram / GB:.1f} GB of memory" in dialog.summary.text()
    assert abs(_gb_before(dialog.summary.text(), " GB free.") - free_disk_bytes(models_folder) / GB) < 1
    dialog.table.selectRow(_row(dialog, "llama3"))
    assert dialog.download_button.isEnabled() and not dialog.use_button.isEnabled()
    dialog.table.selectRow(_row(dialog, "builtin"))
    with qtbot.waitSignal(dialog.useRequested) as used:
        dialog.use_button.click()
    assert used.args[0].source == "builtin" and used.args[0].context_length == window.prefs.model.context_length


def _manifest(tmp_path, url, files: dict[str, int | None]) -> os.PathLike:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {"llama3-hf": {
        "description": "LLaMA3-8B-Instruct (test)", "folder": "llama3-hf",
        "files": [dict({"name": name, "mirrors": [f"{url}/{name}"]}, **({"size": size} if size else {}))
                  for name, size in files.items()]}}}), encoding="utf-8")
    return path


def test_a_download_the_disk_has_no_room_for_is_refused_before_its_first_byte(qtbot, app_qt, tmp_path,
                                                                               models_folder):
    from app.models_page import ModelsDialog

    behaviour = Behaviour(files={"/model.safetensors": payload(1000)})
    with DownloadServer(behaviour) as url:
        manifest = _manifest(tmp_path, url, {"model.safetensors": 10 ** 15})   # 1 PB: no disk has it
        dialog = ModelsDialog(Preferences(), None, manifest=manifest)
        qtbot.addWidget(dialog)
        dialog.table.selectRow(_row(dialog, "llama3-hf"))
        dialog.download_button.click()
        assert "needs 1000000.0 GB more on the disk" in dialog.message.text()
        assert "choose another models folder" in dialog.message.text()
        assert not dialog.downloads.running and behaviour.requests == []
    assert not (models_folder / "llama3-hf").exists()


def test_a_model_too_large_for_this_pcs_memory_asks_before_downloading(qtbot, app_qt, tmp_path, models_folder):
    from app.models_page import ModelsDialog

    behaviour = Behaviour(files={"/model.safetensors": payload(1000)})
    with DownloadServer(behaviour) as url:
        manifest = _manifest(tmp_path, url, {"model.safetensors": 1000})
        dialog = ModelsDialog(Preferences(), None, manifest=manifest)
        qtbot.addWidget(dialog)
        dialog.ram = 4 * GB                                      # a 4 GB netbook
        dialog.table.selectRow(_row(dialog, "llama3-hf"))
        seen = []
        press_on_next_message_box(QMessageBox.StandardButton.No, seen)
        dialog.download_button.click()
        assert "even with 4-bit weights, and this PC has 4.0 GB" in seen[0]
        assert not dialog.downloads.running and behaviour.requests == []
    entry = dialog.entries[_row(dialog, "llama3-hf")]
    # LLaMA3-8B's 8,030 M parameters by hand: 6,980 M in the layers at 4.5 bits (q4_k), the 525 M of the output
    # matrix at 8.5 (it stays 8-bit), its 8,192-token fp16 KV cache (1.07 GB) and the program's 0.4 GB
    four_bit = 6_979_321_856 * 18 / 32 + 525_336_576 * 34 / 32 + 32 * 2 * 1024 * 8192 * 2 + 0.4 * GB
    assert abs(entry.plan.total("int4") - four_bit) < 0.01 * GB
    assert download_check(entry, 100 * GB, 12 * GB) == (            # a 12 GB PC: runs, in 8 bits
        "note", f"As stored it needs {entry.plan.total() / GB:.1f} GB of memory and this PC has 12.0 GB: it will "
                f"run with 8-bit weights ({entry.plan.total('int8') / GB:.1f} GB).")
    assert download_check(entry, 100 * GB, 8 * GB) == (             # an 8 GB laptop: runs, in 4 bits
        "note", f"As stored it needs {entry.plan.total() / GB:.1f} GB of memory and this PC has 8.0 GB: it will "
                f"run with 4-bit weights ({four_bit / GB:.1f} GB; the cpu backend).")
    assert download_check(entry, 100 * GB, 64 * GB) == ("", "")
    assert choice_to_run(entry, ModelChoice(), 8 * GB).weight_format == "int4"     # "Use" loads it that way
    assert choice_to_run(entry, ModelChoice(), 12 * GB).weight_format == "int8"
    assert choice_to_run(entry, ModelChoice(backend="mindspore"), 8 * GB).weight_format == "auto"  # no 4 bits there


def test_remove_says_how_much_and_deletes_only_the_models_own_files(qtbot, app_qt, tmp_path, models_folder):
    from app.models_page import ModelsDialog

    folder = models_folder / "llama3-hf"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload(3_000_000))
    (folder / "tokenizer.model").write_bytes(payload(1000))
    (folder / "my notes.txt").write_text("mine", encoding="utf-8")
    manifest = _manifest(tmp_path, "http://127.0.0.1:9", {"model.safetensors": 3_000_000, "tokenizer.model": 1000})
    dialog = ModelsDialog(Preferences(), None, manifest=manifest)
    qtbot.addWidget(dialog)
    dialog.table.selectRow(_row(dialog, "llama3-hf"))
    assert _cells(dialog, "llama3-hf")[3] == "3.0 MB" and dialog.use_button.isEnabled()
    seen = []
    press_on_next_message_box(QMessageBox.StandardButton.No, seen)
    dialog.remove_button.click()
    assert "(3.0 MB)" in seen[0] and (folder / "model.safetensors").exists()
    press_on_next_message_box(QMessageBox.StandardButton.Yes, seen)
    dialog.remove_button.click()
    assert sorted(p.name for p in folder.iterdir()) == ["my notes.txt"]
    assert not dialog.entries[_row(dialog, "llama3-hf")].complete


def test_a_model_in_use_is_not_removed(qtbot, app_qt, tmp_path, models_folder):
    from app.models_page import ModelsDialog

    folder = models_folder / "llama3-hf"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload(1000))
    manifest = _manifest(tmp_path, "http://127.0.0.1:9", {"model.safetensors": 1000})
    loaded = ModelChoice(source="llama3", checkpoint=str(folder))
    dialog = ModelsDialog(Preferences(), loaded, manifest=manifest)
    qtbot.addWidget(dialog)
    dialog.table.selectRow(_row(dialog, "llama3-hf"))
    dialog.remove_button.click()
    assert "is the model in use" in dialog.message.text() and (folder / "model.safetensors").exists()


def test_a_model_added_by_its_files_must_pass_the_check_and_then_is_listed(qtbot, app_qt, tmp_path, models_folder,
                                                                           llama2_tiny, spm_model):
    from app.models_page import AddModelDialog, ModelsDialog

    ckpt, yml, _, _ = llama2_tiny
    prefs = Preferences()
    dialog = ModelsDialog(prefs, None)
    qtbot.addWidget(dialog)
    add = AddModelDialog(dialog)
    qtbot.addWidget(add)
    add.form.source.setCurrentIndex(add.form.source.findData("llama2"))
    add.form.checkpoint.edit.setText(str(tmp_path / "missing.ckpt"))
    add.accept()
    qtbot.waitUntil(lambda: add.form.check_button.isEnabled() and "not found" in add.form.result.text(), timeout=30_000)
    assert add.result() == 0                                     # refused
    add.name.setText("我的小模型")
    add.form.checkpoint.edit.setText(str(ckpt))
    add.form.tokenizer.edit.setText(str(spm_model))
    add.form.config.edit.setText(str(yml))
    add.show()
    add.accept()
    qtbot.waitUntil(lambda: add.result() == 1, timeout=60_000)
    prefs.added_models.append(add.added())
    dialog.refresh()
    entry = dialog.entries[-1]
    assert (entry.key, entry.title, entry.complete, entry.choice.checkpoint) == ("added:0", "我的小模型", True, str(ckpt))


def test_the_picker_lists_the_models_on_this_pc_and_a_switch_that_fails_keeps_the_working_one(
        qtbot, open_window, home, models_folder):
    from app.preferences import load_preferences

    folder = models_folder / "llama3-hf"
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors.index.json", *(f"model-0000{i}-of-00004.safetensors"
                                                                 for i in range(1, 5))):
        (folder / name).write_bytes(b"{}" if name.endswith(".json") else payload(2000))
    (folder / "tokenizer.model").write_bytes(payload(2183982))   # the published size: "complete" (but not real)
    window = open_window()
    window.model_picker.refresh(window.prefs, window.engine.choice)
    picker = window.model_picker
    items = [picker.itemText(i) for i in range(picker.count())]
    assert items[:2] == ["SmolLM2-135M-Instruct (built-in)", "LLaMA3-8B-Instruct"] and items[-1] == "Manage models…"
    assert picker.itemData(1, Qt.ItemDataRole.ToolTipRole).startswith("A chat model")
    assert picker.currentIndex() == 0
    picker.setCurrentIndex(1)
    picker.activated.emit(1)                                     # what a click on the item does
    qtbot.waitUntil(lambda: window.notice.kind == "load" and not window.engine.loading, timeout=60_000)
    assert str(folder) in window.notice.text() and "Still using SmolLM2-135M-Instruct." in window.notice.text()
    assert picker.currentIndex() == 0                            # back on the model that answers
    assert window.prefs.model == quick_prefs().model
    assert not (home / "settings.json").exists() or load_preferences(home).model == quick_prefs().model


def test_the_first_run_dialog_says_what_this_pc_has_offers_chat_models_first_and_grows_to_fit(
        qtbot, app_qt, tmp_path, monkeypatch):
    from app.first_run import FirstRunDialog

    deep = tmp_path / "一个很长的文件夹名字" / ("models folder with a long name " * 3).strip()
    monkeypatch.setenv("LLAMA_DESK_MODELS_DIR", str(deep))      # a long path: a long message
    dialog = FirstRunDialog(ModelChoice())
    qtbot.addWidget(dialog)
    dialog.show()
    text = dialog.intro.text()
    assert f"This PC has {total_ram_bytes() / GB:.1f} GB of memory" in text
    assert abs(_gb_before(text, " GB free in the models folder") - free_disk_bytes(deep) / GB) < 1  # (others write)
    assert "with 8-bit weights" in text and "30 GB" not in text
    for key, title in (("llama3-hf", "LLaMA3-8B-Instruct"), ("llama2-hf", "LLaMA2-7B-chat")):   # chat models named
        plan = plan_memory(paths.default_model_files(3 if key == "llama3-hf" else 2)["config"])
        assert f"{title}: about {plan.total() / GB:.1f} GB of memory as stored, {plan.total('int8') / GB:.1f} GB " \
               f"with 8-bit weights, {plan.total('int4') / GB:.1f} GB with 4-bit weights" in text
    options = [dialog.form.source.itemText(i) for i in range(dialog.form.source.count())]
    assert "chat" in options[1] and "chat" in options[2] and "base model" in options[3]
    form = dialog.form
    form.source.setCurrentIndex(form.source.findData("llama3-hf"))
    dialog.use.click()                                        # nothing is downloaded yet
    qtbot.waitUntil(lambda: form.check_button.isEnabled() and "not found" in form.result.text(), timeout=30_000)
    assert "Press Download below to get the files." in form.result.text() and dialog.isVisible()
    qtbot.wait(100)
    squeezed = [w.objectName() or type(w).__name__ for w in (form.source, form.checkpoint.edit, form.tokenizer.edit,
                                                            form.download.start_button, dialog.use)
                if w.height() < w.sizeHint().height()]
    assert not squeezed and form.result.height() >= form.result.heightForWidth(form.result.width())


def test_each_models_kind_comes_from_the_download_manifest_and_says_what_a_base_model_is(
        qtbot, app_qt, tmp_path, models_folder):
    """The first-run dialog, the model list of Settings and the Models page follow models.yaml's ``kind``."""
    from app.first_run import FirstRunDialog
    from app.model_picker import ModelPicker
    from app.models_page import ModelsDialog

    manifest = Path(__file__).resolve().parents[1] / "checkpoint_download" / "models.yaml"
    kinds = {name: body["kind"] for name, body in yaml.safe_load(manifest.read_text(encoding="utf-8"))["models"].items()}
    assert kinds["llama2"] == kinds["llama3"] == "base"            # the default downloads are base models
    dialog = FirstRunDialog(ModelChoice())
    qtbot.addWidget(dialog)
    intro = dialog.intro.text()
    assert "LLaMA2-7B, LLaMA3-8B: base models" in intro and "it is not a chat assistant" in intro
    source = dialog.form.source
    for i in range(1, source.count()):
        kind, text = kinds[source.itemData(i)], source.itemText(i)
        assert ("base model: continues text, not a chat assistant" in text) == (kind == "base"), text
        assert ("not a chat assistant" in source.itemData(i, Qt.ItemDataRole.ToolTipRole)) == (kind == "base")
    assert [kinds[source.itemData(i)] for i in range(1, source.count())] == sorted(
        kinds.values(), key=lambda k: k != "chat")                 # chat models first

    flipped = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    flipped["models"]["llama2"]["kind"], flipped["models"]["llama2-hf"]["kind"] = "chat", "base"
    other = tmp_path / "models.yaml"
    other.write_text(yaml.safe_dump(flipped, allow_unicode=True), encoding="utf-8")
    page = ModelsDialog(Preferences(), None, manifest=other)
    qtbot.addWidget(page)
    assert _cells(page, "llama2")[1] == "chat" and _cells(page, "llama2-hf")[1] == "base: continues text"
    assert [e.kind for e in page.entries[1:]] == ["chat", "chat", "base", "base"]   # chat first, whatever the order
    tip = page.table.item(_row(page, "llama2-hf"), 1).toolTip()
    assert "continues the text it is given; it is not a chat assistant" in tip

    folder = models_folder / "llama2"                              # a base model on this PC: the picker marks it
    folder.mkdir(parents=True)
    for spec in yaml.safe_load(manifest.read_text(encoding="utf-8"))["models"]["llama2"]["files"]:
        (folder / spec["name"]).write_bytes(payload(spec.get("size", 2000)))
    picker = ModelPicker()
    qtbot.addWidget(picker)
    picker.refresh(Preferences(), None)
    [item] = [i for i in range(picker.count()) if picker.itemText(i).startswith("LLaMA2-7B")]
    assert picker.itemText(item) == "LLaMA2-7B · base: continues text"
    assert "not a chat assistant" in picker.itemData(item, Qt.ItemDataRole.ToolTipRole)
    from app import translations
    from app.model_catalog import kind_name
    try:
        translations.install(app_qt, "zh_CN")
        assert kind_name("base") == "基础：只续写文本"
    finally:
        translations.install(app_qt, "en")


def test_a_download_goes_on_when_the_models_page_closes_and_quitting_asks_then_pauses_it(
        qtbot, open_window, home, tmp_path, models_folder):
    """As in LM Studio: the status bar shows the download, reopening the page shows it, quitting asks; the
    download paused by quitting resumes where it stopped (real downloader, real HTTP on 127.0.0.1)."""
    from app.downloads import Downloads
    from app.models_page import ModelsDialog

    data = payload(3_200_000)
    behaviour = Behaviour(files={"/model.safetensors": data}, bytes_per_s=320_000)   # 10 s: time to click through
    with DownloadServer(behaviour) as url:
        window = open_window()
        window.manifest = _manifest(tmp_path, url, {"model.safetensors": len(data)})
        downloads, part = window.downloads, models_folder / "llama3-hf" / "model.safetensors.part"

        def start(dialog) -> None:
            dialog.table.selectRow(_row(dialog, "llama3-hf"))
            dialog.download_button.click()
            qtbot.waitUntil(lambda: "of 3.2 MB" in dialog.downloads.detail.text(), timeout=20_000)
            assert "It goes on when this window is closed" in dialog.downloads.title.text()
        act_on_next_dialog(ModelsDialog, start)
        window.open_models()
        assert downloads.running                                    # the dialog is closed: still downloading
        bar = window.status.download
        qtbot.waitUntil(lambda: bar.isVisible() and "%" in bar.text(), timeout=10_000)
        assert bar.text().startswith("Downloading LLaMA3-8B-Instruct: model.safetensors ")
        received = downloads.last_event.done_bytes
        qtbot.waitUntil(lambda: downloads.last_event.done_bytes > received, timeout=10_000)

        def reopened(dialog) -> None:
            panel = dialog.downloads
            assert panel.isVisible() and panel.pause_button.isEnabled() and not dialog.download_button.isEnabled()
            assert "LLaMA3-8B-Instruct" in panel.title.text() and "model.safetensors:" in panel.detail.text()
            panel.pause_button.click()
            assert panel.pause_button.text() == "Resume"
            qtbot.waitUntil(lambda: "paused" in panel.detail.text(), timeout=10_000)
        act_on_next_dialog(ModelsDialog, reopened)
        bar.click()                                                 # the status bar's download opens the page
        qtbot.waitUntil(lambda: "download paused (model.safetensors " in bar.text(), timeout=10_000)
        downloads.toggle_pause()                                    # going on again
        qtbot.waitUntil(lambda: bar.text().startswith("Downloading"), timeout=10_000)

        seen = press_on_next_message_box(QMessageBox.StandardButton.No)     # "Keep running"
        window.close()
        assert "LLaMA3-8B-Instruct is still downloading" in seen[0]
        assert window.isVisible() and downloads.receiving
        press_on_next_message_box(QMessageBox.StandardButton.Yes, seen)     # "Quit and pause the download"
        window.close()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
        assert not downloads.running and len(seen) == 2
        kept = part.stat().st_size
        assert 0 < kept < len(data) and not (part.parent / "model.safetensors").exists()

        behaviour.bytes_per_s = None                                # the rest at full speed
        again = Downloads()                                         # the next start of the app
        with qtbot.waitSignal(again.finished, timeout=60_000):
            again.start("llama3-hf", part.parent, window.manifest)
    assert (part.parent / "model.safetensors").read_bytes() == data
    resumed = [int(r.split("=")[1].split("-")[0]) for p, r, status in behaviour.requests if r and status == 206]
    assert resumed and resumed[-1] >= kept                      # it went on from the bytes kept, not from 0
