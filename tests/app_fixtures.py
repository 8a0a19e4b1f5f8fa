"""Fixtures for the desktop app's tests: real Qt (offscreen), the real engine with the built-in model, real SQLite.

The built-in model is loaded once per session on a real engine thread (``EngineHost``) and shared
by the windows of every test; each test gets its own user-data folder (with a Chinese name) for
its history and settings. The model's one-time conversion lives in the test cache's home.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# A shared virtual environment may hold an editable install of another checkout of this project,
# whose import hook would fill in engine modules this tree does not have: test this tree only.
ISOLATE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
           "if not getattr(f, '__module__', '').startswith('__editable__')]")
exec(ISOLATE)

ROOT = Path(__file__).resolve().parent.parent
MODEL_HOME = Path(os.environ.get("LLAMA_DESK_HOME") or ROOT / "tests" / ".cache" / "home")
LOAD_TIMEOUT_S = 900
CONTEXT = 512  # a short context: the overflow test needs ~600 tokens, not 2000, and no larger graphs
ANSWER_TIMEOUT_MS = 240_000


def wait_until(app, condition, timeout_s: float, what: str) -> None:
    """Run the event loop until ``condition()`` holds (session fixtures have no qtbot)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


@pytest.fixture(scope="session")
def app_qt(qapp):
    """The QApplication prepared as the app prepares it (English, light theme, CJK font fallback)."""
    from app.application import prepare_qt
    from app.preferences import Preferences
    prepare_qt(qapp, Preferences(language="en", theme="light"))
    return qapp


def shared_model():
    from app.preferences import ModelChoice
    return ModelChoice(context_length=CONTEXT)


@pytest.fixture(scope="session")
def engine_host(app_qt):
    """The built-in model, loaded through the app's own engine thread, once."""
    from app.engine_worker import EngineHost

    saved = os.environ.get("LLAMA_DESK_HOME")
    os.environ["LLAMA_DESK_HOME"] = str(MODEL_HOME)
    host = EngineHost()
    failures = []
    host.load(shared_model())
    try:
        wait_until(app_qt, lambda: host.info is not None or not host.loading, LOAD_TIMEOUT_S, "the built-in model")
    finally:
        if saved is None:
            os.environ.pop("LLAMA_DESK_HOME", None)
        else:
            os.environ["LLAMA_DESK_HOME"] = saved
    if host.info is None:
        failures.append("the built-in model did not load (see the log above)")
        pytest.fail(failures[0])
    yield host
    host.shutdown()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """This test's user-data folder; its name is Chinese, so every path the app writes has Chinese in it."""
    folder = tmp_path / "用户数据"
    folder.mkdir()
    monkeypatch.setenv("LLAMA_DESK_HOME", str(folder))
    return folder


def quick_prefs(**chat):
    """Settings for fast, repeatable answers: the built-in model, greedy, short."""
    from app.preferences import Preferences
    prefs = Preferences(setup_done=True, language="en", theme="light")
    prefs.model = shared_model()
    prefs.chat.temperature = 0.0
    prefs.chat.max_new_tokens = 24
    for key, value in chat.items():
        setattr(prefs.chat, key, value)
    return prefs


@pytest.fixture
def open_window(qtbot, home, engine_host):
    """``open_window(prefs=None) -> MainWindow`` on the shared model and this test's history, shown and started."""
    from app.main_window import MainWindow, Services
    from app.storage_worker import Storage

    from shiboken6 import isValid

    windows = []

    def make(prefs=None, engine=None):
        prefs = prefs or quick_prefs()
        services = Services(Storage(home / "chats.sqlite3"), engine or engine_host, owns_engine=engine is not None)
        window = MainWindow(prefs, home, services)
        qtbot.addWidget(window)
        window.show()
        window.start()
        if engine is None:
            qtbot.waitUntil(lambda: window.composer.property("ready"), timeout=30_000)
        windows.append((window, services))
        return window
    yield make
    for window, services in windows:
        if isValid(window) and window.isVisible():
            window.close()
            qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
        services.close()   # (already closed by the window; a failed test may have left its threads running)


def send(qtbot, window, text: str, wait: bool = True) -> None:
    """Type ``text`` and press Enter, as a user does; wait for the answer to end."""
    from PySide6.QtCore import Qt
    window.composer.input.setFocus()
    window.composer.input.setPlainText(text)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    if wait:
        wait_idle(qtbot, window)


def wait_idle(qtbot, window, timeout: int = ANSWER_TIMEOUT_MS) -> None:
    """Until the answer has ended and the history thread has written everything asked of it so far."""
    qtbot.waitUntil(lambda: not window.session.answering, timeout=timeout)
    synced = []
    window.storage.call("conversations", then=synced.append)  # requests run in order: this one is last
    qtbot.waitUntil(lambda: bool(synced), timeout=10_000)


def stored(home: Path) -> list[tuple]:
    """(role, content, complete, finish_reason) of every message on disk, read by another connection."""
    db = sqlite3.connect(home / "chats.sqlite3")
    try:
        return db.execute("SELECT role, content, complete, finish_reason FROM messages ORDER BY id").fetchall()
    finally:
        db.close()


def app_command(*args: str) -> list[str]:
    """``python -m app ARGS`` for a subprocess, importing this tree (see ISOLATE)."""
    code = f"{ISOLATE}; sys.argv[0] = 'app'; import runpy; runpy.run_module('app', run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", code, *args]


def app_env(home: Path, **extra) -> dict:
    env = dict(os.environ, LLAMA_DESK_HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONIOENCODING="utf-8",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


def share_builtin_model(home: Path, kernels: bool = True) -> None:
    """Let a subprocess with its own ``home`` use the already converted built-in model (no 20 s conversion)
    and, with ``kernels``, its compiled kernels (no 10 s compilation). A subprocess that compiles another kernel
    variant (``LLAMA_DESK_CPU_KERNELS``) must not share them: its first start clears the other variants' caches."""
    for folder in ("models", "jit-cache") if kernels else ("models",):
        _share_folder(MODEL_HOME / folder, home / folder)


def _share_folder(source: Path, target: Path) -> None:
    if target.exists() or not source.is_dir():
        return
    try:
        target.symlink_to(source, target_is_directory=True)
    except OSError:  # Windows without the symlink privilege: hard links need none
        for path in source.rglob("*"):
            dest = target / path.relative_to(source)
            if path.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, dest)
                except OSError:
                    import shutil
                    shutil.copy2(path, dest)


def run_app(home: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(app_command(*args), env=app_env(home), cwd=ROOT, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


def press_on_next_message_box(button, seen: list | None = None) -> list[str]:
    """Press ``button`` (Yes/No...) on the next message box once it shows; its text is appended to ``seen``
    (a new list unless one is given), which is returned."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen = [] if seen is None else seen

    def press() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(30, press)
            return
        seen.append(box.text())
        box.button(button).click()
    QTimer.singleShot(30, press)
    return seen


def act_on_next_dialog(kind, act) -> None:
    """Run ``act(dialog)`` once a modal dialog of class ``kind`` shows (the window's ``exec``), then close it
    (also when ``act`` fails, so that the test ends instead of waiting on the dialog)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def look() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, kind):
            QTimer.singleShot(30, look)
            return
        try:
            act(dialog)
        finally:
            dialog.reject()
    QTimer.singleShot(30, look)
