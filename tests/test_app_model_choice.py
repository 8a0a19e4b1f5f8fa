"""Choosing a model: a choice that cannot load is never kept; the first-run dialog takes only files that pass."""

from __future__ import annotations

import copy

from app_fixtures import shared_model

from app.preferences import ModelChoice, load_preferences


def test_a_model_that_cannot_load_is_refused_and_the_working_one_stays_saved(qtbot, open_window, home):
    from engine import EngineError, ModelSource, check_model_files

    missing = home / "模型" / "llama2_7b.ckpt"
    window = open_window()
    bad = copy.deepcopy(window.prefs)
    bad.model = ModelChoice(source="llama2", checkpoint=str(missing))
    window.apply_prefs(bad)                       # what Settings > OK does
    qtbot.waitUntil(lambda: window.notice.kind == "load", timeout=30_000)
    try:
        check_model_files(ModelSource(version=2, checkpoint=missing))
    except EngineError as exc:
        expected = str(exc)
    assert window.notice.text().startswith(expected)
    assert "Still using SmolLM2-135M-Instruct." in window.notice.text()
    assert window.composer.property("ready")      # the loaded model keeps answering
    assert load_preferences(home).model == shared_model()  # the next start loads what worked
    assert window.prefs.model == shared_model()


def test_the_failed_choice_is_what_model_settings_shows_for_correction(qtbot, open_window, home):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.settings_dialog import SettingsDialog

    missing = home / "模型" / "llama3-8B.ckpt"
    window = open_window()
    bad = copy.deepcopy(window.prefs)
    bad.model = ModelChoice(source="llama3", checkpoint=str(missing))
    window.apply_prefs(bad)
    qtbot.waitUntil(lambda: window.notice.kind == "load" and not window.engine.loading, timeout=30_000)
    seen = {}

    def read_and_cancel() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SettingsDialog):
            QTimer.singleShot(50, read_and_cancel)
            return
        seen["source"], seen["checkpoint"] = dialog.model.source.currentData(), dialog.model.checkpoint.text()
        dialog.reject()
    QTimer.singleShot(50, read_and_cancel)
    window.open_model_settings()
    assert seen == {"source": "llama3", "checkpoint": str(missing)}
    assert load_preferences(home).model == shared_model()


def test_the_first_run_dialog_refuses_use_this_model_when_the_files_fail_their_check(qtbot, home, app_qt):
    from engine import EngineError, ModelSource, check_model_files

    from app.first_run import FirstRunDialog

    damaged = home / "llama2_7b.ckpt"
    damaged.write_bytes(b"\x0a\x05hello" + bytes(range(256)) * 8)
    dialog = FirstRunDialog(ModelChoice())
    qtbot.addWidget(dialog)
    dialog.show()
    chosen = []
    dialog.chosen.connect(chosen.append)
    form = dialog.form
    form.source.setCurrentIndex(form.source.findData("llama2"))
    form.checkpoint.edit.setText(str(damaged))
    dialog.use.click()
    qtbot.waitUntil(lambda: form.check_button.isEnabled() and form.result.text() not in ("", "Checking…"),
                    timeout=60_000)
    try:
        check_model_files(ModelSource(version=2, checkpoint=damaged))
    except EngineError as exc:
        expected = str(exc)
    assert form.result.text() == expected
    assert dialog.isVisible() and chosen == []    # refused: the dialog stays, nothing is loaded or saved

    form.source.setCurrentIndex(form.source.findData("builtin"))
    dialog.use.click()                            # a choice that passes is taken
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10_000)
    assert [c.source for c in chosen] == ["builtin"]
