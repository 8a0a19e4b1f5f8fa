"""The main window: conversations on the left, the chat on the right, the model's state at the bottom.

It wires the views to the chat logic (``ChatSession``), the history's thread (``Storage``) and the
model's thread (``EngineHost``). Both threads may outlive one window (``Services``): changing the
language builds a new window on the same model and history.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from engine.paths import HISTORY_FILE

from .chat_session import ChatSession
from .composer import Composer
from .conversation_list import ConversationList
from .engine_worker import EngineHost
from .message_view import MessageView
from .notice_bar import NoticeBar
from .preferences import ModelChoice, Preferences, save_preferences
from .status_bar import StatusBar
from .storage_worker import Storage

CLOSE_WAIT_MS = 15_000
log = logging.getLogger(__name__)


def stage_text(stage: str) -> str:
    """The engine's loading stages, in the user's language."""
    if stage.startswith("compiling"):
        return QCoreApplication.translate("MainWindow", "Compiling")
    known = {"converting built-in model": QCoreApplication.translate("MainWindow", "Preparing the built-in model"),
             "checking": QCoreApplication.translate("MainWindow", "Checking the checkpoint"),
             "weights": QCoreApplication.translate("MainWindow", "Reading weights")}
    return known.get(stage, stage)


@dataclass
class Services:
    """The two worker threads. Closing them closes the history; the engine too unless it is shared."""

    storage: Storage
    engine: EngineHost
    owns_engine: bool = True

    def __post_init__(self) -> None:
        # streamed text goes from the engine's thread straight to the storage thread, whatever window shows it
        self.engine.worker.tokens.connect(self.storage.worker.append_text)

    @classmethod
    def start(cls, home: Path) -> "Services":
        return cls(Storage(Path(home) / HISTORY_FILE), EngineHost())

    def close(self) -> None:
        if getattr(self, "closed", False):
            return
        self.closed = True
        self.engine.worker.tokens.disconnect(self.storage.worker.append_text)
        self.storage.close()
        if self.owns_engine:
            self.engine.shutdown()


class MainWindow(QMainWindow):
    rebuildRequested = Signal()           # the language changed: build a new window on the same services
    modelReady = Signal(object)           # ModelInfo, on the UI thread
    modelFailed = Signal(str, object)     # the engine's message, hint

    def __init__(self, prefs: Preferences, home: Path, services: Services, owns_services: bool = True):
        super().__init__()
        self.prefs, self.home, self.services, self.owns_services = prefs, Path(home), services, owns_services
        self.storage, self.engine = services.storage, services.engine
        self.api_address = ""
        self._closing = self._handed_over = False
        self.setWindowTitle("llama-desk")
        self.resize(1120, 760)
        self._build()
        self.session = ChatSession(self.storage, self.engine, self.messages, self.conversations, prefs, self)
        self._connect()

    def _build(self) -> None:
        self.conversations = ConversationList(self)
        self.title = QLabel(self.tr("New conversation"))
        self.title.setObjectName("chatTitle")
        self.chat_settings_button = QPushButton(self.tr("Conversation settings…"))
        self.chat_settings_button.clicked.connect(self.edit_conversation_settings)
        header = QHBoxLayout()
        header.setContentsMargins(16, 8, 12, 4)
        header.addWidget(self.title, 1)
        header.addWidget(self.chat_settings_button)
        self.notice = NoticeBar(self)
        self.messages = MessageView(self)
        self.composer = Composer(self)
        pane = QWidget()
        column = QVBoxLayout(pane)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(header)
        column.addWidget(self.notice)
        column.addWidget(self.messages, 1)
        column.addWidget(self.composer)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.conversations)
        self.splitter.addWidget(pane)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 860])
        self.setCentralWidget(self.splitter)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self._menus()

    def _menus(self) -> None:
        chat = self.menuBar().addMenu(self.tr("&Chat"))
        self._action(chat, self.tr("&New chat"), self.session_new, QKeySequence.StandardKey.New)
        self._action(chat, self.tr("&Export…"), lambda: self.export(self.session.conversation.uid)
                     if self.session.conversation else None, "Ctrl+E")
        chat.addSeparator()
        self._action(chat, self.tr("&Quit"), self.close, QKeySequence.StandardKey.Quit)
        settings = self.menuBar().addMenu(self.tr("&Settings"))
        self._action(settings, self.tr("&Settings…"), lambda: self.open_settings(),
                     QKeySequence.StandardKey.Preferences)
        self._action(settings, self.tr("&Model…"), lambda: self.open_settings("model"))
        self._action(settings, self.tr("&Conversation settings…"), self.edit_conversation_settings)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        return action

    def _connect(self) -> None:
        worker = self.engine.worker
        worker.progress.connect(self._on_progress)
        worker.loaded.connect(self._on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.unloaded.connect(self._on_unloaded)  # worker signals: bound methods only (lambdas would run
        #                                             on the engine thread)
        self.engine.api.state.connect(self._on_api_state)
        self.status.cancelLoad.connect(self.engine.cancel_load)
        self.storage.error.connect(lambda m: self.notice.show_message(self.tr("The chat could not be saved: {0}")
                                                                      .format(m)))
        self.messages.copied.connect(lambda _uid: self.status.showMessage(self.tr("Copied."), 2000))
        self.composer.send.connect(self.session.send)
        self.composer.stop.connect(self.session.stop)
        self.session.answeringChanged.connect(self.composer.set_answering)
        self.session.answeringChanged.connect(lambda _a: self._show_title())
        self.session.contextUsed.connect(self.status.set_context)
        self.session.problem.connect(lambda m: self.notice.show_message(m))
        self.conversations.selected.connect(self.session.open)
        self.session.conversationShown.connect(self._show_title)
        self.conversations.newRequested.connect(self.session_new)
        self.conversations.renamed.connect(self.rename)
        self.conversations.deleted.connect(self.delete)
        self.conversations.exportRequested.connect(self.export)
        self.conversations.searchChanged.connect(self._search)
        self.composer.set_ready(self.engine.info is not None)

    # -- start-up and the model -------------------------------------------------------------------------

    def start(self, load_model: bool = True) -> None:
        """After the window is on screen: read the list of conversations, then load the model."""
        self.storage.call("conversations", then=self.conversations.set_conversations)
        if self.engine.info is not None:
            self._on_loaded(self.engine.info)
        if self.prefs.api_server:  # the server follows the model: it starts once one is loaded
            self.engine.set_api_server(True, self.prefs.api_port, self.prefs.api_key)
        if load_model:
            self.load_model(self.prefs.model)

    def load_model(self, choice: ModelChoice) -> None:
        self.notice.clear()
        self.composer.set_ready(False)
        self.status.show_loading(True, self.tr("Starting"))
        self.engine.load(choice)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.status.show_loading(True, stage_text(stage), done, total)

    def _on_loaded(self, info) -> None:
        self.status.show_loading(False)
        self.status.show_model(info)
        self.composer.set_ready(True)
        if self.notice.kind == "load":
            self.notice.clear()
        self.modelReady.emit(info)

    def _on_unloaded(self) -> None:
        self.status.show_model(None)
        self.composer.set_ready(False)

    def _on_load_failed(self, message: str, hint: dict) -> None:
        if self.engine.loading:  # replaced by a newer choice, which is loading now
            return
        self.status.show_loading(False)
        current = self.engine.info                 # bad files are refused before the current model is closed
        self.status.show_model(current)
        self.composer.set_ready(current is not None)
        if current is not None:
            message += "\n" + self.tr("Still using {0}.").format(current.name)
        choice, actions = self.prefs.model, []
        if hint.get("suggested_format") == "int8":
            actions.append((self.tr("Use 8-bit weights"),
                            lambda: self.use_model(replace(choice, weight_format="int8"))))
        elif hint.get("suggested_format") == "int4":
            actions.append((self.tr("Use 4-bit weights"),
                            lambda: self.use_model(replace(choice, weight_format="int4"))))
        version = hint.get("suggested_version")
        if version in (2, 3) and choice.version != version:
            actions.append((self.tr("Load as LLaMA{0}").format(version),
                            lambda: self.use_model(replace(choice, source=f"llama{version}"))))
        actions.append((self.tr("Model settings…"), lambda: self.open_settings("model")))
        if choice.source != "builtin":
            actions.append((self.tr("Use the built-in model"),
                            lambda: self.use_model(replace(choice, source="builtin"))))
        else:
            actions.append((self.tr("Try again"), lambda: self.load_model(choice)))
        self.notice.show_message(message, actions, kind="load")
        self.modelFailed.emit(message, hint)

    def use_model(self, choice: ModelChoice) -> None:
        self.prefs.model = choice
        self.save_prefs()
        self.load_model(choice)

    def _on_api_state(self, running: bool, detail: str) -> None:
        self.api_address = detail if running else ""
        if running:
            self.status.showMessage(self.tr("Local API server: {0}").format(detail))
        elif detail and self.prefs.api_server:
            self.notice.show_message(detail, kind="api")

    # -- conversations ------------------------------------------------------------------------------

    def session_new(self) -> None:
        self.session.new_conversation()
        self._show_title()
        self.composer.input.setFocus()

    def _show_title(self) -> None:
        conv = self.session.conversation
        self.title.setText(conv.title if conv else self.tr("New conversation"))

    def rename(self, uid: str, title: str) -> None:
        self.storage.call("rename_conversation", uid, title)
        self.conversations.set_title(uid, title)
        if self.session.conversation and self.session.conversation.uid == uid:
            self.session.conversation.title = title
            self._show_title()

    def delete(self, uid: str) -> None:
        if self.session.streaming and self.session.streaming[0] == uid:
            self.session.stop()
        self.storage.call("delete_conversation", uid)
        self.conversations.remove(uid)
        if self.session.conversation and self.session.conversation.uid == uid:
            self.session_new()
        self.forget_saved_state(uid)

    def forget_saved_state(self, uid: str | None) -> None:
        """Delete a conversation's saved states (``None``: every conversation's), off the UI thread."""
        from .background import Task

        def job(_report):
            from engine.generation.prompt_states import remove_states
            from engine.paths import prompt_states_dir
            return remove_states(prompt_states_dir(), uid)
        self._state_task = Task(job, parent=self).start()

    def _search(self, text: str) -> None:
        if text:
            self.storage.call("search", text, then=self.conversations.set_matches)
        else:
            self.conversations.set_matches(None)

    def export(self, uid: str, path: str | None = None) -> None:
        if path is None:
            title = self.conversations.title_of(uid)
            safe = "".join(ch for ch in title if ch not in '\\/:*?"<>|').strip() or "chat"
            path, _ = QFileDialog.getSaveFileName(self, self.tr("Export conversation"),
                                                  str(Path.home() / f"{safe}.md"),
                                                  self.tr("Markdown (*.md);;JSON (*.json)"))
            if not path:
                return
        self.storage.call("export", uid, path,
                          then=lambda p: self.status.showMessage(self.tr("Exported to {0}").format(p), 8000),
                          otherwise=lambda m: self.notice.show_message(self.tr("Export failed: {0}").format(m)))

    # -- settings -----------------------------------------------------------------------------------

    def save_prefs(self) -> None:
        try:
            save_preferences(self.prefs, self.home)
        except OSError as exc:
            self.notice.show_message(self.tr("The settings could not be saved: {0}").format(exc))

    def open_settings(self, page: str = "general") -> None:
        from .settings_dialog import SettingsDialog
        dialog = SettingsDialog(self.prefs, self, page=page, api_address=self.api_address)
        if dialog.exec():
            self.apply_prefs(dialog.result_prefs())

    def apply_prefs(self, new: Preferences) -> None:
        old = copy.deepcopy(self.prefs)
        self.prefs.__dict__.update(copy.deepcopy(new).__dict__)  # the session holds the same object
        self.save_prefs()
        from .theme import apply_theme
        apply_theme(self.prefs.theme)
        if new.model != old.model or self.engine.info is None:
            self.load_model(new.model)
        if (new.api_server, new.api_port, new.api_key) != (old.api_server, old.api_port, old.api_key):
            self.engine.set_api_server(new.api_server, new.api_port, new.api_key)
        if new.language != old.language:
            self.rebuildRequested.emit()

    def edit_conversation_settings(self) -> None:
        from .conversation_settings import ConversationSettingsDialog
        conv = self.session.conversation
        if conv is None:
            self.notice.show_message(self.tr("Send a first message, then adjust this conversation's settings. "
                                             "Defaults for new conversations are in Settings."), kind="info")
            return
        dialog = ConversationSettingsDialog(conv, self.prefs.chat, self)
        if dialog.exec():
            self.set_conversation_settings(*dialog.values())

    def set_conversation_settings(self, system_prompt: str | None, overrides: dict) -> None:
        """The current conversation's own system prompt (None: the default) and generation settings."""
        conv = self.session.conversation
        conv.system_prompt, conv.settings = system_prompt, overrides
        self.storage.call("set_conversation_settings", conv.uid, system_prompt, overrides)

    # -- closing ------------------------------------------------------------------------------------

    def hand_over(self) -> None:
        """Close this window without closing the services: a new window takes them."""
        self._handed_over = True
        self.close()

    def closeEvent(self, event) -> None:
        if self.session.answering and not self._handed_over:
            # stop the answer, let its end be saved, then close (at most CLOSE_WAIT_MS later)
            event.ignore()
            if not self._closing:
                self._closing = True
                self.status.showMessage(self.tr("Stopping the answer…"))
                self.session.answeringChanged.connect(lambda answering: answering or self.close())
                self.session.stop()
                QTimer.singleShot(CLOSE_WAIT_MS, self._close_anyway)
            return
        self.engine.cancel_load()
        if self.owns_services and not self._handed_over:
            self.services.close()
        event.accept()

    def _close_anyway(self) -> None:
        if self.session.streaming:
            log.error("the answer did not stop within %d ms; closing anyway", CLOSE_WAIT_MS)
            answer = self.session.streaming[1]
            self.session._end(answer.uid, answer.content, "cancelled", {}, False)
        self.close()
