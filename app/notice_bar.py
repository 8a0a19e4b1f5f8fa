"""A message across the top of the chat (a model that failed to load, an answer that failed, a save error),
with buttons for what the user can do about it. Never a traceback: the engine's own message."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton


class NoticeBar(QFrame):
    acted = Signal()                      # one of its buttons was pressed (the window gives focus back)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("notice")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(12, 8, 8, 8)
        self.row.addWidget(self.label, 1)
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip(self.tr("Hide this message"))
        self.close_button.clicked.connect(self._dismiss)
        self.row.addWidget(self.close_button)
        self.buttons: list[QPushButton] = []
        self._actions: dict[QPushButton, Callable[[], None]] = {}
        self.kind = ""
        self.hide()

    def show_message(self, text: str, actions: list[tuple[str, Callable[[], None]]] = (), kind: str = "error") -> None:
        self.clear()
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        for title, slot in actions:
            button = QPushButton(title, self)
            # the button calls our bound method, not ``slot``: a callable holding the window, connected to a
            # signal of the window's own child, would be released inside Qt's destructors at exit
            button.clicked.connect(self._run_action)
            self._actions[button] = slot
            self.row.insertWidget(self.row.count() - 1, button)
            self.buttons.append(button)
        self.show()

    def _run_action(self) -> None:
        action = self._actions.get(self.sender())
        if action is not None:
            action()
        self.acted.emit()

    def _dismiss(self) -> None:
        self.clear()
        self.acted.emit()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def clear(self) -> None:
        for button in self.buttons:
            button.deleteLater()
        self.buttons = []
        self._actions.clear()
        self.kind = ""
        self.label.clear()
        self.hide()
