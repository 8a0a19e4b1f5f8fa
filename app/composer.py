"""Where the user types: Enter sends, Shift+Enter starts a new line; Send turns into Stop while answering.

The text box stays usable during an answer (the next question can be written meanwhile); Enter
only sends when no answer is being written.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QWidget


class MessageInput(QPlainTextEdit):
    submitted = Signal()

    def keyPressEvent(self, event) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not (event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        lines = min(max(self.document().blockCount(), 3), 8)
        return QSize(super().sizeHint().width(), self.fontMetrics().lineSpacing() * lines + 16)


class Composer(QWidget):
    send = Signal(str)
    stop = Signal()
    notReady = Signal()                   # Enter or Send with text but no model to answer it yet
    busyElsewhere = Signal()              # Enter or Send while another conversation is being answered

    def __init__(self, parent=None):
        super().__init__(parent)
        self.answering = self.busy_elsewhere = False
        self.input = MessageInput(self)
        self.input.setPlaceholderText(self.tr("Type a message. Enter sends, Shift+Enter starts a new line."))
        self.input.submitted.connect(self._submit)
        self.input.textChanged.connect(self._update)
        self.button = QPushButton(self)
        self.button.setObjectName("sendButton")
        self.button.clicked.connect(self._clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 12, 10)
        row.addWidget(self.input, 1)
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignBottom)
        self.set_answering(False)

    def set_answering(self, answering: bool) -> None:
        self.answering = answering
        self.button.setText(self.tr("Stop") if answering else self.tr("Send"))
        self.button.setToolTip(self.tr("Stop the answer now") if answering else self.tr("Send (Enter)"))
        self._update()

    def set_busy_elsewhere(self, busy: bool) -> None:
        """Another conversation's answer is being written: sending here waits (and says why)."""
        self.busy_elsewhere = busy

    def set_ready(self, ready: bool) -> None:
        """Sending needs a loaded model; typing does not."""
        self.setProperty("ready", ready)
        self._update()

    def _update(self) -> None:
        ready = bool(self.property("ready"))
        self.button.setEnabled(self.answering or (ready and bool(self.input.toPlainText().strip())))

    def _submit(self) -> None:
        if self.answering:
            return
        if self.button.isEnabled():
            self._clicked()
        elif self.input.toPlainText().strip():
            self.notReady.emit()

    def _clicked(self) -> None:
        self.input.setFocus()             # typing goes on in the box after Send or Stop
        if self.answering:
            self.stop.emit()
            return
        text = self.input.toPlainText().strip()
        if text and self.busy_elsewhere:
            self.busyElsewhere.emit()
        elif text:
            self.input.clear()
            self.send.emit(text)
