"""What the window does with whole conversations: rename, delete, search, export one or all, import.

The history's thread does the work (``Storage.call``); this turns its replies into what the window
shows. Kept apart from the window, which only wires it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from .background import Task
from .export import safe_file_name


class ChatActions(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window

    def rename(self, uid: str, title: str) -> None:
        w = self.window
        w.storage.call("rename_conversation", uid, title)
        w.conversations.set_title(uid, title)
        if w.session.conversation and w.session.conversation.uid == uid:
            w.session.conversation.title = title
            w.show_title()

    def delete(self, uid: str) -> None:
        w = self.window
        if w.session.streaming and w.session.streaming[0] == uid:
            w.session.stop()
        w.storage.call("delete_conversation", uid)
        w.conversations.remove(uid)
        if w.session.conversation and w.session.conversation.uid == uid:
            w.session_new()
        self.forget_saved_state(uid)

    def forget_saved_state(self, uid: str | None) -> None:
        """Delete a conversation's saved states (``None``: every conversation's), off the UI thread; the status
        bar then shows what the others take."""
        def job(_report):
            from engine.generation.prompt_states import remove_states, states_size
            from engine.paths import prompt_states_dir
            remove_states(prompt_states_dir(), uid)
            return states_size(prompt_states_dir())
        Task(job, then=self.window.status.set_state_cache).start()   # it keeps itself alive until it is done

    def search(self, text: str) -> None:
        if text:
            self.window.storage.call("search_snippets", text, then=self.window.conversations.set_matches)
        else:
            self.window.conversations.set_matches(None)

    def export(self, uid: str, path: str | None = None) -> None:
        if path is None:
            title = self.window.conversations.title_of(uid)
            path, _ = QFileDialog.getSaveFileName(self.window, self.tr("Export conversation"),
                                                  str(Path.home() / f"{safe_file_name(title)}.md"),
                                                  self.tr("Markdown (*.md);;JSON (*.json)"))
            if not path:
                return
        self.window.storage.call("export", uid, path, then=self._exported, otherwise=self._export_failed)

    def export_all(self, path: str | None = None) -> None:
        """Every conversation, with its settings and every version, and the app's model and settings, as JSON."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.window, self.tr("Export all conversations"),
                                                  str(Path.home() / "llama-desk conversations.json"),
                                                  self.tr("JSON (*.json)"))
            if not path:
                return
        prefs = self.window.prefs
        settings = {"model": asdict(prefs.model), "chat": asdict(prefs.chat)}
        self.window.storage.call("export_all", path, settings, then=self._exported_all,
                                 otherwise=self._export_failed)

    def import_conversations(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.window, self.tr("Import conversations"), str(Path.home()),
                                                  self.tr("JSON (*.json)"))
            if not path:
                return
        self.window.storage.call("import", path, then=self._imported, otherwise=self._import_failed)

    def _exported(self, path: str) -> None:
        self.window.status.showMessage(self.tr("Exported to {0}").format(path), 8000)

    def _exported_all(self, count: int) -> None:
        self.window.status.showMessage(self.tr("{0} conversation(s) exported.").format(count), 8000)

    def _imported(self, count: int) -> None:
        self.window.status.showMessage(self.tr("{0} conversation(s) imported.").format(count), 8000)
        self.window.storage.call("conversations", then=self.window.conversations.set_conversations)

    def _import_failed(self, message: str) -> None:
        self.window.notice.show_message(self.tr("Import failed: {0}").format(message))

    def _export_failed(self, message: str) -> None:
        self.window.notice.show_message(self.tr("Export failed: {0}").format(message))
