"""The list of conversations: new, search (titles and text), rename, delete, export."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (QInputDialog, QLineEdit, QListWidget, QListWidgetItem, QMenu, QMessageBox,
                               QPushButton, QVBoxLayout, QWidget)

from .storage import Conversation

UID_ROLE = Qt.ItemDataRole.UserRole
BUSY_COLOUR = "#2ecc71"                   # a green dot: seen on the light, dark and selected backgrounds


def busy_icon(colour: QColor) -> QIcon:
    """A filled dot: the mark of the conversation whose answer is being written."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(colour)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(2, 2, 8, 8)
    painter.end()
    return QIcon(pixmap)


class ConversationList(QWidget):
    selected = Signal(str)
    newRequested = Signal()
    renamed = Signal(str, str)
    deleted = Signal(str)
    exportRequested = Signal(str)
    searchChanged = Signal(str)           # debounced; "" clears the search

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.new_button = QPushButton(self.tr("New chat"), self)
        self.new_button.setObjectName("newChat")
        self.new_button.clicked.connect(self.newRequested)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText(self.tr("Search conversations"))
        self.search.setClearButtonEnabled(True)
        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self._search_settled)
        self.search.textChanged.connect(self._search_edited)
        self.list = QListWidget(self)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._current_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        self._conversations: list[Conversation] = []
        self._matches: set[str] | None = None
        self._wanted: str | None = None
        self._menu_uid: str | None = None
        self._busy: str | None = None       # the conversation whose answer is being written

    def _search_edited(self, _text: str) -> None:
        self._debounce.start()

    def _search_settled(self) -> None:
        self.searchChanged.emit(self.search.text().strip())

    # -- contents -----------------------------------------------------------------------------------

    def set_conversations(self, conversations: list[Conversation]) -> None:
        """The stored list; conversations started while it was being read stay on top."""
        stored = {c.uid for c in conversations}
        self._conversations = [c for c in self._conversations if c.uid not in stored] + list(conversations)
        self._rebuild()

    def upsert(self, conversation: Conversation, to_top: bool = True) -> None:
        self._conversations = [c for c in self._conversations if c.uid != conversation.uid]
        self._conversations.insert(0 if to_top else len(self._conversations), conversation)
        self._rebuild()

    def remove(self, uid: str) -> None:
        self._conversations = [c for c in self._conversations if c.uid != uid]
        self._rebuild()

    def set_title(self, uid: str, title: str) -> None:
        for c in self._conversations:
            if c.uid == uid:
                c.title = title
        self._rebuild()

    def set_busy(self, uid: str | None) -> None:
        """Mark the conversation being answered (a dot and a tooltip), so a user sees which one is busy."""
        if uid != self._busy:
            self._busy = uid
            self._rebuild()

    def busy_uid(self) -> str | None:
        """The conversation the list marks as being answered."""
        return self._busy

    def set_matches(self, uids: list[str] | None) -> None:
        self._matches = None if uids is None else set(uids)
        self._rebuild()

    def titles(self) -> list[str]:
        """What the list shows, top to bottom."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    def select(self, uid: str) -> None:
        self._wanted = uid  # kept for when the stored list arrives
        for i in range(self.list.count()):
            if self.list.item(i).data(UID_ROLE) == uid:
                self.list.setCurrentRow(i)
                return

    def current_uid(self) -> str | None:
        item = self.list.currentItem()
        return item.data(UID_ROLE) if item else None

    def _rebuild(self) -> None:
        current = self.current_uid() or self._wanted
        self.list.blockSignals(True)
        self.list.clear()
        for c in self._conversations:
            if self._matches is None or c.uid in self._matches:
                item = QListWidgetItem(c.title)
                item.setData(UID_ROLE, c.uid)
                item.setToolTip(c.title)
                if c.uid == self._busy:
                    item.setIcon(busy_icon(QColor(BUSY_COLOUR)))
                    item.setToolTip(self.tr("{0} (being answered)").format(c.title))
                self.list.addItem(item)
        if current:
            self.select(current)
        self.list.blockSignals(False)  # re-selecting what was selected opens nothing

    def _current_changed(self, item, _previous) -> None:
        if item is not None:
            self.selected.emit(item.data(UID_ROLE))

    # -- actions ------------------------------------------------------------------------------------

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        self._menu_uid = item.data(UID_ROLE)
        menu = QMenu(self)
        menu.addAction(self.tr("Rename…"), self._rename_from_menu)
        menu.addAction(self.tr("Export…"), self._export_from_menu)
        menu.addSeparator()
        menu.addAction(self.tr("Delete…"), self._delete_from_menu)
        menu.exec(self.list.mapToGlobal(pos))
        menu.deleteLater()

    def _rename_from_menu(self) -> None:
        self.ask_rename(self._menu_uid)

    def _export_from_menu(self) -> None:
        self.exportRequested.emit(self._menu_uid)

    def _delete_from_menu(self) -> None:
        self.ask_delete(self._menu_uid)

    def title_of(self, uid: str) -> str:
        return next((c.title for c in self._conversations if c.uid == uid), "")

    def ask_rename(self, uid: str) -> None:
        title, ok = QInputDialog.getText(self, self.tr("Rename conversation"), self.tr("Title:"),
                                         text=self.title_of(uid))
        if ok and title.strip():
            self.renamed.emit(uid, title.strip())

    def ask_delete(self, uid: str) -> None:
        question = self.tr("Delete “{0}”? Its text is erased from the disk; this cannot be undone.")
        answer = QMessageBox.question(self, self.tr("Delete conversation"), question.format(self.title_of(uid)))
        if answer == QMessageBox.StandardButton.Yes:
            self.deleted.emit(uid)
