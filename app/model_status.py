"""The model as the window shows it: loading with progress, loaded, refused (with a way out), the local API,
and this computer's CPU check.

It listens to the engine thread's signals (bound methods only: a lambda would run on that thread)
and drives the window's status bar, composer, notice bar and model picker. A choice is saved only
once it has loaded, so a bad file is never what the next start tries.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial

from PySide6.QtCore import QCoreApplication, QObject

from .background import Task
from .preferences import ModelChoice


def check_cpu(_report) -> dict:
    from engine.cpu_info import cpu_report
    return cpu_report()


def stage_text(stage: str) -> str:
    """The engine's loading stages, in the user's language."""
    if stage.startswith("compiling"):
        return QCoreApplication.translate("MainWindow", "Compiling")
    known = {"converting built-in model": QCoreApplication.translate("MainWindow", "Preparing the built-in model"),
             "checking": QCoreApplication.translate("MainWindow", "Checking the checkpoint"),
             "weights": QCoreApplication.translate("MainWindow", "Reading weights")}
    return known.get(stage, stage)


class ModelStatus(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window, self.engine = window, window.engine
        self.api_address = ""
        self.cpu: dict | None = None      # this computer's CPU and memory, once checked
        self._cpu_task: Task | None = None
        worker = self.engine.worker
        worker.progress.connect(self._on_progress)
        worker.loaded.connect(self.on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.unloaded.connect(self._on_unloaded)
        self.engine.api.state.connect(self._on_api_state)
        worker.stateCacheSize.connect(window.status.set_state_cache)
        window.status.cancelLoad.connect(self.engine.cancel_load)

    def check_cpu(self) -> None:
        """Once, after the model's first load (or failure): LLVM's import would only slow the first paint."""
        if self.cpu is None and self._cpu_task is None:
            self._cpu_task = Task(check_cpu, then=self._cpu_checked).start()

    def load(self, choice: ModelChoice) -> None:
        w = self.window
        w.notice.clear()
        w.composer.set_ready(False)
        w.status.show_loading(True, self.tr("Starting"))
        self.engine.load(choice)

    def explain_not_ready(self) -> None:
        """Enter with no model to answer: say why, instead of doing nothing."""
        w = self.window
        if self.engine.loading:
            text = self.tr("The model is still loading; your message stays in the box. Press Enter again once "
                           "it is ready (see the status bar).")
        elif w.notice.kind == "load":
            return                        # the message why no model is loaded is on screen already
        else:
            text = self.tr("No model is loaded: choose one in Settings > Model.")
        w.notice.show_message(text, kind="wait")

    def _cpu_checked(self, report: dict) -> None:
        self.cpu = report
        if not report["fast"] and not self.window.notice.isVisible():
            from .about_dialog import slow_cpu_text
            self.window.notice.show_message(slow_cpu_text(report), kind="info")

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.window.status.show_loading(True, stage_text(stage), done, total)

    def on_loaded(self, info) -> None:
        w = self.window
        if self.engine.choice is not None and self.engine.choice != w.prefs.model:
            w.prefs.model = copy.deepcopy(self.engine.choice)   # it works: keep it for the next start
            w.save_prefs()
        w.status.show_loading(False)
        w.status.show_model(info)
        w.model_picker.refresh(w.prefs, self.engine.choice)
        w.composer.set_ready(True)
        if w.notice.kind in ("load", "wait"):
            w.notice.clear()
        w.session.report_context()
        self.check_cpu()
        w.modelReady.emit(info)

    def _on_unloaded(self) -> None:
        self.window.status.show_model(None)
        self.window.composer.set_ready(False)

    def _on_load_failed(self, message: str, hint: dict) -> None:
        if self.engine.loading:  # replaced by a newer choice, which is loading now
            return
        w = self.window
        w.status.show_loading(False)
        current = self.engine.info                 # bad files are refused before the current model is closed
        w.status.show_model(current)
        w.composer.set_ready(current is not None)
        if current is not None:
            message += "\n" + self.tr("Still using {0}.").format(current.name)
        choice, actions = self.engine.failed_choice or w.prefs.model, []
        if hint.get("suggested_format") == "int8":
            actions.append((self.tr("Use 8-bit weights"), partial(self.load, replace(choice, weight_format="int8"))))
        elif hint.get("suggested_format") == "int4":
            actions.append((self.tr("Use 4-bit weights"), partial(self.load, replace(choice, weight_format="int4"))))
        version = hint.get("suggested_version")
        if version in (2, 3) and choice.version != version:
            actions.append((self.tr("Load as LLaMA{0}").format(version),
                            partial(self.load, replace(choice, source=f"llama{version}"))))
        actions.append((self.tr("Model settings…"), w.open_model_settings))
        if choice.source != "builtin":
            actions.append((self.tr("Use the built-in model"), partial(self.load, replace(choice, source="builtin"))))
        else:
            actions.append((self.tr("Try again"), partial(self.load, choice)))
        w.notice.show_message(message, actions, kind="load")
        w.model_picker.refresh(w.prefs, self.engine.choice)
        self.check_cpu()
        w.modelFailed.emit(message, hint)

    def _on_api_state(self, running: bool, detail: str) -> None:
        self.api_address = detail if running else ""
        if running:
            self.window.status.showMessage(self.tr("Local API server: {0}").format(detail))
        elif detail and self.window.prefs.api_server:
            self.window.notice.show_message(detail, kind="api")
