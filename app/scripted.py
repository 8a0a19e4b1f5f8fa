"""Scripted runs of the real app for tests: ``--send TEXT`` and ``--change-setting NAME``.

``--change-setting`` plays what a user does: once the model is loaded it opens Settings (the same
``open_settings`` as the menu), changes one control, presses OK, waits until the change has taken
effect (a new window for the language, a reloaded model, the API server answering), then closes the
window. The process's exit code is the app's, so a crash at exit shows as one.

The script is a QObject with bound-method slots: PySide holds those weakly, so the script never
keeps a window alive (a Python function connected to a window's signal and holding that window
was what crashed the app at exit).
"""

from __future__ import annotations

import logging
import socket

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

SETTINGS = ("theme", "language", "api", "model", "answers")
POLL_MS = 100
SETTLE_MS = 300
TIMEOUT_POLLS = 600            # 60 s for a change to take effect
log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SendOnce(QObject):
    """Ask ``text`` in a new conversation the first time the model is ready."""

    def __init__(self, application, text: str):
        super().__init__()
        self.application, self.text = application, text
        application.window.modelReady.connect(self._ready)

    def _ready(self, _info) -> None:
        window = self.application.window
        window.modelReady.disconnect(self._ready)
        window.session_new()
        window.session.send(self.text)


class ChangeSettingAndClose(QObject):
    """Settings > change ``names`` > OK > wait for the effect > close the window."""

    def __init__(self, application, names: list[str]):
        super().__init__()
        self.application, self.names = application, list(names)
        self.changed: list[str] = []
        self.polls = 0
        application.window.modelReady.connect(self._ready)

    def _ready(self, _info) -> None:
        self.application.window.modelReady.disconnect(self._ready)
        QTimer.singleShot(0, self._open)

    def _open(self) -> None:
        QTimer.singleShot(POLL_MS, self._change)     # runs inside the dialog's own event loop
        self.application.window.open_settings()      # returns once OK was pressed
        QTimer.singleShot(POLL_MS, self._wait)

    def _change(self) -> None:
        from .settings_dialog import SettingsDialog
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SettingsDialog):
            QTimer.singleShot(POLL_MS, self._change)
            return
        for name in self.names:
            self._change_one(dialog, name)
        dialog.ok_button.click()

    def _change_one(self, dialog, name: str) -> None:
        def other(combo) -> None:
            combo.setCurrentIndex((combo.currentIndex() + 1) % combo.count())
        if name == "theme":
            other(dialog.theme)
        elif name == "language":
            dialog.language.setCurrentIndex(dialog.language.findData(
                "en" if dialog.language.currentData() == "zh_CN" else "zh_CN"))
        elif name == "api":
            dialog.port.setValue(free_port())
            dialog.api.setChecked(not dialog.api.isChecked())
        elif name == "model":
            length = dialog.model.context_length
            length.setValue(1024 if length.value() != 1024 else 768)
        elif name == "answers":
            temperature = dialog.generation.temperature
            temperature.setValue(0.3 if temperature.value() != 0.3 else 0.5)
        self.changed.append(name)

    def _settled(self) -> bool:
        window = self.application.window
        if window.engine.loading or window.engine.info is None or self.application.rebuilding:
            return False
        if "api" in self.changed and window.prefs.api_server:
            return bool(window.api_address) or window.notice.kind == "api"
        return True

    def _wait(self) -> None:
        self.polls += 1
        if self._settled():
            QTimer.singleShot(SETTLE_MS, self._close)
        elif self.polls > TIMEOUT_POLLS:
            log.error("the settings change %s did not take effect in time", self.changed)
            QApplication.instance().exit(3)
        else:
            QTimer.singleShot(POLL_MS, self._wait)

    def _close(self) -> None:
        print(f"changed: {', '.join(self.changed)}", flush=True)
        self.application.window.close()
