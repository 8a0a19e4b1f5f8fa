"""``python -m app --screenshot PATH [--page chat|models|settings]``: the real window, a PNG.

``chat`` (the default) loads the built-in model and plays a short streamed chat; ``models`` and
``settings`` show that page once the model is loaded (its name is in the status bar behind); Settings
shows the Model page with LLaMA3-8B-Instruct chosen (its files, and the download offered). The chat
is kept in a temporary history (the user's own is not touched); the built-in model is converted
into the user-data folder as usual. Exit code 0 when the PNG is written, 2 when the model could not
load or answer, 3 on a time-out. ``docs/make_screenshots.py`` makes the README's pictures with it.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from engine.paths import HISTORY_FILE

from .application import tear_down
from .engine_worker import EngineHost
from .main_window import MainWindow, Services
from .preferences import ModelChoice, Preferences
from .storage_worker import Storage

QUESTIONS = ("Write a Python function that checks whether a number is prime.",
             "中国的首都是哪里？")
PAGES = ("chat", "models", "settings")
TIMEOUT_MS = 15 * 60 * 1000


class ScreenshotScript(QObject):
    """Ask each question once the previous answer is done, then save the window (bound-method slots only)."""

    def __init__(self, app: QApplication, window: MainWindow, path: str, page: str = "chat"):
        super().__init__()
        self.app, self.window, self.path, self.page = app, window, Path(path), page
        self.code = 3
        self.asked: list[str] = []
        self.dialog = None
        window.modelReady.connect(self._ready)
        window.modelFailed.connect(self._load_failed)
        window.session.answerFinished.connect(self._answered)
        QTimer.singleShot(TIMEOUT_MS, self._timed_out)

    def finish(self, code: int, message: str = "") -> None:
        self.code = code
        if message:
            print(message, file=sys.stderr, flush=True)
        self.app.exit(code)

    def _ready(self, _info) -> None:
        if self.page != "chat":
            QTimer.singleShot(0, self._show_page)
        elif not self.asked:
            self._ask_next()

    def _show_page(self) -> None:
        """The Models or Settings page, open over the window as a user sees it."""
        if self.page == "models":
            from .models_page import ModelsDialog
            self.dialog = ModelsDialog(self.window.prefs, self.window.engine.choice, self.window)
        else:
            from .settings_dialog import SettingsDialog
            self.dialog = SettingsDialog(self.window.prefs, self.window, page="model")
            form = self.dialog.model           # a chat model to download: its files and the download panel
            form.source.setCurrentIndex(form.source.findData("llama3-hf"))
        self.dialog.show()
        QTimer.singleShot(400, self._save)

    def _ask_next(self) -> None:
        if len(self.asked) == len(QUESTIONS):
            QTimer.singleShot(400, self._save)
            return
        self.asked.append(QUESTIONS[len(self.asked)])
        self.window.composer.input.setPlainText(self.asked[-1])
        self.window.composer.button.click()

    def _answered(self, _uid: str, result: dict) -> None:
        if result.get("finish_reason") == "error":
            self.finish(2, f"The answer failed: {result.get('error', '')}")
        else:
            self._ask_next()

    def _save(self) -> None:
        bar = self.window.messages.verticalScrollBar()
        bar.setValue(bar.maximum())
        self.app.processEvents()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (self.dialog or self.window).grab().save(str(self.path), "PNG"):
            print(f"Saved {self.path}", flush=True)
            self.finish(0)
        else:
            self.finish(2, f"Could not write {self.path}")

    def _load_failed(self, message: str, _hint) -> None:
        self.finish(2, f"The built-in model could not load: {message}")

    def _timed_out(self) -> None:
        self.finish(3, "Timed out.")


def run_screenshot(app: QApplication, prefs: Preferences, home: Path, path: str, page: str = "chat"
                   ) -> tuple[int, bool]:
    """The exit code, and whether everything was torn down (see ``application.tear_down``)."""
    prefs = copy.deepcopy(prefs)
    prefs.model = ModelChoice()                        # the built-in model, as stored
    prefs.chat.temperature = 0.0                       # the same picture every time
    prefs.chat.max_new_tokens = 200
    prefs.api_server = False
    folder = Path(tempfile.mkdtemp(prefix="llama-desk-screenshot-"))
    services = Services(Storage(folder / HISTORY_FILE), EngineHost())
    window = MainWindow(prefs, home, services)
    window.resize(1180, 820)
    script = ScreenshotScript(app, window, path, page)
    window.show()
    QTimer.singleShot(0, window.start)
    app.exec()
    if script.dialog is not None:
        script.dialog.deleteLater()
    torn_down = tear_down(services, [window])
    shutil.rmtree(folder, ignore_errors=True)
    return script.code, torn_down
