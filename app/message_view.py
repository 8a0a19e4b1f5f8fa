"""The conversation pane: one card per message, with Copy, Edit (questions) and Regenerate (last answer).

Under each answer: its length in tokens, decode speed and time to first token, or why it is not
complete. When the conversation no longer fits in the model's context, the turns that were left
out of the last answer are dimmed and a banner says how many (as Jan does).
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from .markdown_view import MarkdownView
from .storage import Message
from .theme import tool_button


def can_continue(message: Message) -> bool:
    """An answer cut short (stopped, at its length limit, or by a closed app) can be written on."""
    return (message.role == "assistant" and bool(message.content.strip())
            and (message.finish_reason in ("cancelled", "length") or message.interrupted))


def stats_line(stats: dict) -> str:
    """'42 tokens · 18.3 tokens/s · first token 0.41 s' (what the user sees under an answer)."""
    if not stats or "generated_tokens" not in stats:
        return ""
    count = int(stats["generated_tokens"])
    parts = [QCoreApplication.translate("MessageView", "1 token") if count == 1 else
             QCoreApplication.translate("MessageView", "{0} tokens").format(count)]
    if stats.get("tokens_per_s"):
        parts.append(QCoreApplication.translate("MessageView", "{0:.1f} tokens/s").format(stats["tokens_per_s"]))
    if stats.get("ttft_s"):
        parts.append(QCoreApplication.translate("MessageView", "first token {0:.2f} s").format(stats["ttft_s"]))
    return " · ".join(parts)


def prefill_line(done: int, total: int, seconds_left: float | None) -> str:
    """'Reading the conversation: 1,200 / 2,000 tokens, ~40 s left' (a long prompt before the first word)."""
    text = QCoreApplication.translate("MessageView", "Reading the conversation: {0:,} / {1:,} tokens").format(done, total)
    if seconds_left is not None and done < total:
        text += QCoreApplication.translate("MessageView", ", ~{0} s left").format(max(1, round(seconds_left)))
    return text


def state_line(message: Message) -> str:
    if message.complete:
        return ""
    if message.finish_reason == "cancelled":
        return QCoreApplication.translate("MessageView", "Stopped: this answer is incomplete.")
    if message.finish_reason == "error":
        failed = QCoreApplication.translate("MessageView", "This answer failed: {0}")
        return failed.format(message.stats.get("error", ""))
    return QCoreApplication.translate("MessageView", "Incomplete: the app closed while this answer was being written.")


class MessageCard(QFrame):
    copied = Signal(str)
    editSubmitted = Signal(str, str)      # message uid, new text
    regenerate = Signal()
    continueRequested = Signal()
    versionRequested = Signal(str, int)   # message uid, -1 (the version before) or +1 (the one after)

    def __init__(self, message: Message, speaker: str, parent=None):
        super().__init__(parent)
        self.message = message
        self.setObjectName("userCard" if message.role == "user" else "answerCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        header = QHBoxLayout()
        self.speaker = QLabel(f"<b>{speaker}</b>")
        header.addWidget(self.speaker)
        header.addStretch(1)
        self.copy_button = tool_button(self, self.tr("Copy"), self.tr("Copy this message"), self._copy)
        self.edit_button = tool_button(self, self.tr("Edit"), self.tr("Edit this question and answer it again"),
                                      self._start_edit)
        self.regenerate_button = tool_button(self, self.tr("Regenerate"), self.tr("Write this answer again"),
                                            self.regenerate)
        self.continue_button = tool_button(self, self.tr("Continue"),
                                           self.tr("Go on writing this answer where it stopped"), self.continueRequested)
        for button in (self.edit_button, self.copy_button, self.continue_button, self.regenerate_button):
            header.addWidget(button)
        self.edit_button.setVisible(message.role == "user")
        self.regenerate_button.setVisible(False)
        self.continue_button.setVisible(False)
        layout.addLayout(header)
        self.left_out = QLabel(self.tr("Left out: no longer fits in the model's context."))
        self.left_out.setObjectName("dimNote")
        self.left_out.hide()
        layout.addWidget(self.left_out)
        self.body = MarkdownView(self, markdown=message.role == "assistant")
        layout.addWidget(self.body)
        self.editor = QPlainTextEdit(self)
        self.editor.hide()
        layout.addWidget(self.editor)
        self.edit_buttons = QWidget(self)
        row = QHBoxLayout(self.edit_buttons)
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        self.edit_cancel, self.edit_send = QPushButton(self.tr("Cancel")), QPushButton(self.tr("Send"))
        self.edit_cancel.clicked.connect(self._end_edit)
        self.edit_send.clicked.connect(self._submit_edit)
        row.addWidget(self.edit_cancel)
        row.addWidget(self.edit_send)
        self.edit_buttons.hide()
        layout.addWidget(self.edit_buttons)
        self.footer = QLabel()
        self.footer.setObjectName("dimNote")
        self.footer.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.setSpacing(2)
        self.previous_version = tool_button(self, "‹", self.tr("The version before"), self._show_previous)
        self.version = QLabel()
        self.version.setObjectName("dimNote")
        self.next_version = tool_button(self, "›", self.tr("The version after"), self._show_next)
        for widget in (self.previous_version, self.version, self.next_version):
            bottom.addWidget(widget)
        bottom.addWidget(self.footer, 1)
        layout.addLayout(bottom)
        self.body.set_text(message.content)
        self.refresh_footer()

    def append_text(self, text: str) -> None:
        self.message.content += text
        self.body.set_text(self.message.content)

    def set_text(self, text: str) -> None:
        self.message.content = text
        self.body.set_text(text)

    def refresh_footer(self, streaming: bool = False, reading: str = "") -> None:
        """What is known about the answer: its stats and state, or while it is written, how far it is."""
        reused = self.tr("the saved conversation state was reused") if self.message.stats.get("state_reused") else ""
        if streaming:
            text = " · ".join(t for t in (reading or self.tr("Writing…"), reused) if t)
        else:
            text = " · ".join(t for t in (stats_line(self.message.stats), reused, state_line(self.message)) if t)
        self.footer.setText(text)
        self.footer.setVisible(bool(text))
        m = self.message
        for widget in (self.previous_version, self.version, self.next_version):
            widget.setVisible(m.versions > 1)
        self.version.setText(f"{m.version}/{m.versions}")
        self.previous_version.setEnabled(m.version > 1)
        self.next_version.setEnabled(m.version < m.versions)

    def _show_previous(self) -> None:
        self.versionRequested.emit(self.message.uid, -1)

    def _show_next(self) -> None:
        self.versionRequested.emit(self.message.uid, 1)

    def set_left_out(self, left_out: bool) -> None:
        self.left_out.setVisible(left_out)
        self.body.setEnabled(not left_out)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.message.content)
        self.copied.emit(self.message.uid)

    def _start_edit(self) -> None:
        self.editor.setPlainText(self.message.content)
        self.body.hide()
        self.editor.show()
        self.edit_buttons.show()
        self.editor.setFocus()

    def _end_edit(self) -> None:
        self.editor.hide()
        self.edit_buttons.hide()
        self.body.show()

    def _submit_edit(self) -> None:
        text = self.editor.toPlainText().strip()
        if text:
            self._end_edit()
            self.editSubmitted.emit(self.message.uid, text)


class MessageView(QScrollArea):
    """The cards of one conversation, newest at the bottom; follows the stream while scrolled down."""

    editSubmitted = Signal(str, str)
    regenerate = Signal()
    continueRequested = Signal()
    copied = Signal(str)
    versionRequested = Signal(str, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        inner.setObjectName("messageArea")
        self.column = QVBoxLayout(inner)
        self.column.setContentsMargins(16, 12, 16, 12)
        self.column.setSpacing(10)
        self.banner = QLabel()
        self.banner.setObjectName("contextBanner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.column.addWidget(self.banner)
        self.column.addStretch(1)
        self.setWidget(inner)
        self.cards: list[MessageCard] = []
        self._follow = True
        self.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.verticalScrollBar().rangeChanged.connect(self._range_changed)

    def clear(self) -> None:
        for card in self.cards:
            card.deleteLater()
        self.cards = []
        self.banner.hide()
        self._follow = True

    def add(self, message: Message, speaker: str) -> MessageCard:
        card = MessageCard(message, speaker, self.widget())
        card.editSubmitted.connect(self.editSubmitted)
        card.regenerate.connect(self.regenerate)
        card.copied.connect(self.copied)
        card.versionRequested.connect(self.versionRequested)
        card.continueRequested.connect(self.continueRequested)
        self.column.insertWidget(self.column.count() - 1, card)
        self.cards.append(card)
        self._follow = True
        return card

    def card(self, uid: str) -> MessageCard | None:
        return next((c for c in self.cards if c.message.uid == uid), None)

    def remove_from(self, uid: str) -> None:
        """Remove a card and every card after it."""
        first = next((i for i, c in enumerate(self.cards) if c.message.uid == uid), len(self.cards))
        for card in self.cards[first:]:
            card.deleteLater()
        del self.cards[first:]

    def set_actions_enabled(self, idle: bool) -> None:
        """Edit and Regenerate only while no answer is being written; Regenerate on the last answer only."""
        last = self.cards[-1] if self.cards else None
        for card in self.cards:
            card.edit_button.setEnabled(idle)
            for button, usable in ((card.previous_version, card.message.version > 1),
                                   (card.next_version, card.message.version < card.message.versions)):
                button.setEnabled(idle and usable)
            card.regenerate_button.setVisible(idle and card is last and card.message.role == "assistant")
            card.continue_button.setVisible(idle and card is last and can_continue(card.message))

    def show_left_out(self, dropped: int, context_length: int) -> None:
        """Dim the oldest ``dropped`` messages (before the latest question) and say why."""
        history = [c for c in self.cards if c.message.role != "system"]
        for i, card in enumerate(history):
            card.set_left_out(i < dropped)
        if dropped:
            self.banner.setText(self.tr("{0} earlier message(s) no longer fit in the model's context ({1} tokens) and "
                                   "were left out of the latest answer.").format(dropped, context_length))
        self.banner.setVisible(bool(dropped))

    def _scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 24

    def _range_changed(self, _low: int, high: int) -> None:
        if self._follow:
            QTimer.singleShot(0, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))
