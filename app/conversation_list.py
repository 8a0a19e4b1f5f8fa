"""The list of conversations: new, search (titles and text, with the words that matched), rename, delete, export.

Rename, Export and Delete are buttons under the list (and F2 / Delete on it), not only in the right-click
menu, which many users never open.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                               QMessageBox, QPushButton, QVBoxLayout, QWidget)

from .storage import Conversation
from .theme import tool_button

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


class ChatListWidget(QListWidget):
    """The list itself: F2 renames and Delete deletes the selected conversation, as in a file manager."""

    renameKey = Signal()
    deleteKey = Signal()

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_F2:
            self.renameKey.emit()
        elif event.matches(QKeySequence.StandardKey.Delete):
            self.deleteKey.emit()
        else:
            super().keyPressEvent(event)


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
        self.list = ChatListWidget(self)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._current_changed)
        self.rename_button = tool_button(self, self.tr("Rename…"), self.tr("Rename this conversation (F2)"),
                                                 self._rename_current)
        self.export_button = tool_button(self, self.tr("Export…"), self.tr("Save this conversation as Markdown "
                                                                             "or JSON"), self._export_current)
        self.delete_button = tool_button(self, self.tr("Delete…"), self.tr("Delete this conversation (Del)"),
                                                 self._delete_current)
        actions = QHBoxLayout()
        for button in (self.rename_button, self.export_button, self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)
        self.list.renameKey.connect(self._rename_current)
        self.list.deleteKey.connect(self._delete_current)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addLayout(actions)
        self._conversations: list[Conversation] = []
        self._matches: dict[str, str] | None = None   # uid -> the words that matched the search
        self._wanted: str | None = None
        self._menu_uid: str | None = None
        self._busy: str | None = None       # the conversation whose answer is being written
        self._enable_actions()

    def _enable_actions(self) -> None:
        for button in (self.rename_button, self.export_button, self.delete_button):
            button.setEnabled(self.current_uid() is not None)

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

    def set_matches(self, found: list[tuple[str, str]] | None) -> None:
        """The search's result: (uid, the words around the match; "" when the title matched), or None for all."""
        self._matches = None if found is None else dict(found)
        self._rebuild()

    def titles(self) -> list[str]:
        """The titles the list shows, top to bottom."""
        return [self.title_of(self.list.item(i).data(UID_ROLE)) for i in range(self.list.count())]

    def snippet_of(self, row: int) -> str:
        """The matching words shown under a title during a search."""
        return (self._matches or {}).get(self.list.item(row).data(UID_ROLE), "")

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
                found = (self._matches or {}).get(c.uid, "")
                item = QListWidgetItem(f"{c.title}\n{found}" if found else c.title)
                item.setData(UID_ROLE, c.uid)
                item.setToolTip(f"{c.title}\n{found}" if found else c.title)
                if c.uid == self._busy:
                    item.setIcon(busy_icon(QColor(BUSY_COLOUR)))
                    item.setToolTip(self.tr("{0} (being answered)").format(c.title))
                self.list.addItem(item)
        if current:
            self.select(current)
        self.list.blockSignals(False)  # re-selecting what was selected opens nothing
        self._enable_actions()

    def _current_changed(self, item, _previous) -> None:
        self._enable_actions()
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

    def _rename_current(self) -> None:
        if self.current_uid():
            self.ask_rename(self.current_uid())

    def _export_current(self) -> None:
        if self.current_uid():
            self.exportRequested.emit(self.current_uid())

    def _delete_current(self) -> None:
        if self.current_uid():
            self.ask_delete(self.current_uid())

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
