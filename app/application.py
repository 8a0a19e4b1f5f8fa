"""The running app: one window at a time over the same model and history, the first-run dialog, scripting hooks.

Start-up order keeps the first paint fast: preferences (a small JSON), translations, theme, the
two worker threads (idle), the window; only after it is shown does the model start loading on its
thread, so MindSpore is imported there and never before the window is on screen.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

from engine.paths import LOGS_FOLDER

from . import translations
from .first_run import FirstRunDialog
from .main_window import MainWindow, Services
from .preferences import Preferences
from .theme import apply_font, apply_theme, follow_system_changes


def setup_logging(home: Path) -> Path:
    """Unexpected errors go to a log file in the user-data folder; the window shows one line."""
    folder = Path(home) / LOGS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "app.log"
    handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def prepare_qt(app: QApplication, prefs: Preferences) -> str:
    """Language, font and theme, before any widget exists; returns the language in use."""
    from .main_thread_gc import install
    install(app)                     # Qt objects in garbage cycles die on this thread, not the engine's
    app.setApplicationName("llama-desk")
    app.setOrganizationName("llama-desk")
    language = translations.install(app, prefs.language)
    apply_font(app)
    apply_theme(prefs.theme)
    follow_system_changes(app)
    return language


def tear_down(services: Services, windows: list) -> bool:
    """Close the history and the model, then delete the windows, while Python is still fully alive.

    Left to the interpreter's exit, PySide deletes the Qt objects Python still owns in no set order;
    a window deleted that way while a Python function connected to one of its children still held it
    was deleted twice (the crash at exit after a settings change). False when a worker thread could
    not stop in time: the caller must then leave without deleting anything (a QThread destroyed while
    running aborts the process).
    """
    services.close()
    busy = [t.objectName() for t in (services.engine.thread, services.storage.thread) if t.isRunning()]
    if busy:
        logging.getLogger(__name__).warning("still busy at exit: %s thread(s)", ", ".join(busy))
        return False
    for window in windows:
        window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return True


class Application(QObject):
    def __init__(self, app: QApplication, prefs: Preferences, home: Path, services: Services | None = None,
                 first_run: bool = True):
        super().__init__()
        self.app, self.prefs, self.home = app, prefs, Path(home)
        self.services = services or Services.start(self.home)
        self.first_run = first_run and not prefs.setup_done
        self.window = self._new_window()
        self.first_run_dialog: FirstRunDialog | None = None
        self._rebuild_waiting = False

    @property
    def rebuilding(self) -> bool:
        """A new window (another language) waits for the current answer to end."""
        return self._rebuild_waiting

    def _new_window(self) -> MainWindow:
        window = MainWindow(self.prefs, self.home, self.services)
        window.rebuildRequested.connect(self._rebuild)
        return window

    def show(self, load_model: bool = True) -> MainWindow:
        self.window.show()
        self._load_at_start = load_model
        QTimer.singleShot(0, self._start_window)
        if self.first_run:
            QTimer.singleShot(0, self._ask_first_run)
        return self.window

    def bring_forward(self) -> None:
        """A second start of the app asked for this window: show it on top, un-minimised."""
        window = self.window
        if window.isMinimized():
            window.showNormal()
        window.show()
        window.raise_()
        window.activateWindow()

    def _start_window(self) -> None:
        self.window.start(self._load_at_start)

    def _ask_first_run(self) -> None:
        dialog = FirstRunDialog(self.prefs.model, self.window, self.services.downloads)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(self._use_chosen_model)
        dialog.finished.connect(self._first_run_done)
        dialog.setModal(False)
        dialog.show()
        self.first_run_dialog = dialog

    def _use_chosen_model(self, choice) -> None:
        self.window.use_model(choice)

    def _first_run_done(self, _result: int) -> None:
        self.first_run_dialog = None
        self.prefs.setup_done = True
        self.window.save_prefs()

    def _rebuild_after_answer(self, answering: bool) -> None:
        if not answering and self._rebuild_waiting:
            self._rebuild_waiting = False
            QTimer.singleShot(0, self._rebuild)

    def _rebuild(self) -> None:
        """Show the window again in the new language, on the same model and history."""
        old = self.window
        if old.session.answering:  # the answer's stream belongs to the old window: wait for its end
            if not self._rebuild_waiting:
                self._rebuild_waiting = True
                old.session.answeringChanged.connect(self._rebuild_after_answer)
            return
        translations.install(self.app, self.prefs.language)
        conversation = old.session.conversation
        geometry = old.saveGeometry()
        self.window = self._new_window()
        self.window.restoreGeometry(geometry)
        self.window.show()
        self.window.start(load_model=False)
        if conversation is not None:
            self.window.session.open(conversation.uid)
            self.window.conversations.select(conversation.uid)
        old.hand_over()
        old.deleteLater()

    def tear_down(self) -> bool:
        """After the event loop: see ``tear_down``."""
        return tear_down(self.services, [self.window])
