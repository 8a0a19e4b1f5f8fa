"""``python -m app --screenshot PATH``: the real window, the built-in model, a short streamed chat, a PNG.

The chat is kept in a temporary history (the user's own is not touched); the built-in model is
converted into the user-data folder as usual. Exit code 0 when the PNG is written, 2 when the
model could not load or answer, 3 on a time-out.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from engine.paths import HISTORY_FILE

from .engine_worker import EngineHost
from .main_window import MainWindow, Services
from .preferences import ModelChoice, Preferences
from .storage_worker import Storage

QUESTIONS = ("Write a Python function that checks whether a number is prime.",
             "中国的首都是哪里？")
TIMEOUT_MS = 15 * 60 * 1000


def run_screenshot(app: QApplication, prefs: Preferences, home: Path, path: str) -> int:
    prefs = copy.deepcopy(prefs)
    prefs.model = ModelChoice()                        # the built-in model, as stored
    prefs.chat.temperature = 0.0                       # the same picture every time
    prefs.chat.max_new_tokens = 200
    prefs.api_server = False
    folder = Path(tempfile.mkdtemp(prefix="llama-desk-screenshot-"))
    services = Services(Storage(folder / HISTORY_FILE), EngineHost())
    window = MainWindow(prefs, home, services)
    window.resize(1180, 820)
    outcome = {"code": 3}
    asked = []

    def finish(code: int, message: str = "") -> None:
        outcome["code"] = code
        if message:
            print(message, file=sys.stderr, flush=True)
        app.exit(code)

    def ask_next(*_args) -> None:
        if len(asked) == len(QUESTIONS):
            QTimer.singleShot(400, save)
            return
        asked.append(QUESTIONS[len(asked)])
        window.composer.input.setPlainText(asked[-1])
        window.composer.button.click()

    def answered(_uid: str, result: dict) -> None:
        if result.get("finish_reason") == "error":
            finish(2, f"The answer failed: {result.get('error', '')}")
        else:
            ask_next()

    def save() -> None:
        window.messages.verticalScrollBar().setValue(window.messages.verticalScrollBar().maximum())
        app.processEvents()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if window.grab().save(str(target), "PNG"):
            print(f"Saved {target}", flush=True)
            finish(0)
        else:
            finish(2, f"Could not write {target}")

    def load_failed(message: str, _hint) -> None:
        finish(2, f"The built-in model could not load: {message}")

    # window signals are emitted on the UI thread, so plain functions may take them
    window.modelReady.connect(lambda _info: ask_next() if not asked else None)
    window.modelFailed.connect(load_failed)
    window.session.answerFinished.connect(answered)
    QTimer.singleShot(TIMEOUT_MS, lambda: finish(3, "Timed out."))
    window.show()
    QTimer.singleShot(0, window.start)
    app.exec()
    window.close()
    shutil.rmtree(folder, ignore_errors=True)
    return outcome["code"]
