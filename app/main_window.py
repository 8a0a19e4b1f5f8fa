"""The main window: conversations on the left, the chat on the right, the model's state at the bottom.

It wires the views to the chat logic (``ChatSession``), the history's thread (``Storage``) and the
model's thread (``EngineHost``). Both threads, and a model download, may outlive one window
(``Services``): changing the language builds a new window on the same model, history and download.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QPushButton, QSplitter, QVBoxLayout, QWidget

from engine.paths import HISTORY_FILE

from .chat_session import ChatSession
from .composer import Composer
from .conversation_list import ConversationList
from .downloads import Downloads
from .engine_worker import EngineHost
from .message_view import MessageView
from .chat_actions import ChatActions
from .model_picker import ModelPicker
from .model_status import ModelStatus
from .notice_bar import NoticeBar
from .preferences import ModelChoice, Preferences, save_preferences
from .status_bar import StatusBar
from .storage import Conversation
from .storage_worker import Storage

CLOSE_WAIT_MS = 15_000
log = logging.getLogger(__name__)


@dataclass
class Services:
    """The two worker threads and the model download. Closing them pauses the download (its ``.part`` is
    kept), closes the history, and the engine too unless it is shared."""

    storage: Storage
    engine: EngineHost
    owns_engine: bool = True
    downloads: Downloads = field(default_factory=Downloads)

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
        self.downloads.stop()
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
        self.storage, self.engine, self.downloads = services.storage, services.engine, services.downloads
        self._closing = self._handed_over = self._quit_asked = False
        self.manifest: Path | None = None  # another models.yaml for the Models page (tests)
        self.setWindowTitle("llama-desk")
        self.resize(1120, 760)
        self._build()
        self.session = ChatSession(self.storage, self.engine, self.messages, self.conversations, prefs, self)
        self.model_status = ModelStatus(self)
        self.chat_actions = ChatActions(self)
        self._connect()

    def _build(self) -> None:
        self.conversations = ConversationList(self)
        self.title = QLabel(self.tr("New conversation"))
        self.title.setObjectName("chatTitle")
        self.chat_settings_button = QPushButton(self.tr("Conversation settings…"))
        self.chat_settings_button.clicked.connect(self.edit_conversation_settings)
        self.model_picker = ModelPicker(self)
        self.model_picker.chosen.connect(self.use_model)
        self.model_picker.manageRequested.connect(self.open_models)
        header = QHBoxLayout()
        header.setContentsMargins(16, 8, 12, 4)
        header.addWidget(self.title, 1)
        header.addWidget(self.model_picker)
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
        self._action(chat, self.tr("&Export…"), self.export_current, "Ctrl+E")
        self._action(chat, self.tr("Export &all conversations…"), self.export_all)
        self._action(chat, self.tr("&Import conversations…"), self.import_conversations)
        chat.addSeparator()
        self._action(chat, self.tr("&Quit"), self.close, "Ctrl+Q")
        settings = self.menuBar().addMenu(self.tr("&Settings"))
        self._action(settings, self.tr("&Settings…"), self.open_general_settings, "Ctrl+,")
        self._action(settings, self.tr("&Model…"), self.open_model_settings)
        self._action(settings, self.tr("M&odels…"), self.open_models, "Ctrl+M")
        self._action(settings, self.tr("&Conversation settings…"), self.edit_conversation_settings)
        help_menu = self.menuBar().addMenu(self.tr("&Help"))
        self._action(help_menu, self.tr("&About llama-desk…"), self.open_about)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        return action

    def _connect(self) -> None:
        # Slots are bound methods, never lambdas: PySide holds a bound method weakly, but a lambda strongly,
        # and a lambda that holds this window, connected to a signal of one of its own children, is
        # released from inside Qt's destructor of that child: the window's wrapper then deletes the window
        # a second time (the crash at exit after a settings change).
        self.storage.error.connect(self._on_storage_error)
        self.storage.unsaved.connect(self._on_storage_unsaved)
        self.storage.saved_again.connect(self._on_storage_saved_again)
        self.messages.copied.connect(self._on_copied)
        self.composer.send.connect(self.session.send)
        self.composer.stop.connect(self.session.stop)
        self.composer.notReady.connect(self.model_status.explain_not_ready)
        self.notice.acted.connect(self.focus_input)
        self.messages.regenerate.connect(self.focus_input)
        self.messages.continueRequested.connect(self.focus_input)
        self.messages.editSubmitted.connect(self.focus_input)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.stop_answer)
        self.session.answeringChanged.connect(self._answering_changed)
        self.session.contextUsed.connect(self.status.set_context)
        self.session.problem.connect(self.notice.show_message)
        self.conversations.selected.connect(self.session.open)
        self.session.conversationShown.connect(self._conversation_shown)
        self.composer.busyElsewhere.connect(self._explain_busy)
        self.conversations.newRequested.connect(self.session_new)
        self.conversations.renamed.connect(self.chat_actions.rename)
        self.conversations.deleted.connect(self.chat_actions.delete)
        self.conversations.exportRequested.connect(self.chat_actions.export)
        self.conversations.searchChanged.connect(self.chat_actions.search)
        self.composer.set_ready(self.engine.info is not None)
        self.status.follow(self.downloads)
        self.status.openModels.connect(self.open_models)
        self.downloads.finished.connect(self._model_downloaded)

    # -- start-up and the model -------------------------------------------------------------------------

    def start(self, load_model: bool = True) -> None:
        """After the window is on screen: read the list of conversations (and show the last one), then load
        the model (and check the CPU once it is there)."""
        self.storage.call("conversations", then=self._conversations_read)
        if self.engine.info is not None:
            self.model_status.on_loaded(self.engine.info)
        self.engine.weights_gb = self.prefs.quantized_weights_gb
        if self.prefs.api_server:  # the server follows the model: it starts once one is loaded
            self.engine.set_api_server(True, self.prefs.api_port, self.prefs.api_key, self.prefs.api_streams)
        if load_model:
            self.load_model(self.prefs.model)

    # the model (model_status.py) and whole conversations (chat_actions.py), as scripts and tests call them

    def load_model(self, choice: ModelChoice) -> None:
        """Load ``choice``; it becomes the saved choice only once it has loaded (a bad file is never kept)."""
        self.model_status.load(choice)

    def use_model(self, choice: ModelChoice) -> None:
        self.model_status.load(choice)

    @property
    def api_address(self) -> str:
        return self.model_status.api_address

    @property
    def cpu(self) -> dict | None:
        return self.model_status.cpu

    def rename(self, uid: str, title: str) -> None:
        self.chat_actions.rename(uid, title)

    def delete(self, uid: str) -> None:
        self.chat_actions.delete(uid)

    def export(self, uid: str, path: str | None = None) -> None:
        self.chat_actions.export(uid, path)

    def export_current(self) -> None:
        if self.session.conversation is not None:
            self.chat_actions.export(self.session.conversation.uid)

    def export_all(self, path: str | None = None) -> None:
        self.chat_actions.export_all(path)

    def import_conversations(self, path: str | None = None) -> None:
        self.chat_actions.import_conversations(path)

    def focus_input(self, *_args) -> None:
        """After a button (Stop, Regenerate, a notice's) typing goes to the message box again."""
        self.composer.input.setFocus()

    def stop_answer(self) -> None:
        if self.session.answering:
            self.session.stop()
            self.focus_input()

    def open_about(self) -> None:
        from .about_dialog import AboutDialog
        self.model_status.check_cpu()
        dialog = AboutDialog(self.cpu, self.home, self)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()

    def _conversations_read(self, conversations: list) -> None:
        self.conversations.set_conversations(conversations)
        if self.session.conversation is None and self.session.wanted is None and conversations:
            last = next((c.uid for c in conversations if c.uid == self.prefs.last_conversation), conversations[0].uid)
            self.conversations.select(last)   # the conversation shown when the app was last closed

    def _answering_changed(self, answering: bool) -> None:
        self._update_composer()
        self.show_title()
        self.conversations.set_busy(self.session.streaming[0] if self.session.streaming else None)
        if not answering and self.notice.kind == "busy":
            self.notice.clear()

    def _conversation_shown(self) -> None:
        self.show_title()
        self._update_composer()
        uid = self.session.conversation.uid if self.session.conversation else ""
        if uid != self.prefs.last_conversation:
            self.prefs.last_conversation = uid
            self.save_prefs()

    def _update_composer(self) -> None:
        self.composer.set_answering(self.session.answering_here)
        self.composer.set_busy_elsewhere(self.session.answering and not self.session.answering_here)

    def _explain_busy(self) -> None:
        """Enter in one conversation while another is being answered: say so, offer to go there or stop it."""
        busy = self.conversations.title_of(self.session.streaming[0]) if self.session.streaming else ""
        self.notice.show_message(
            self.tr("“{0}” is still being answered: one answer is written at a time. Your message stays in the box; "
                    "send it when that answer is done.").format(busy),
            [(self.tr("Show it"), self.show_busy_conversation), (self.tr("Stop it"), self.stop_answer)], kind="busy")

    def show_busy_conversation(self) -> None:
        if self.session.streaming:
            self.conversations.select(self.session.streaming[0])

    # -- conversations ------------------------------------------------------------------------------

    def session_new(self) -> None:
        self.session.new_conversation()
        self.show_title()
        self.composer.input.setFocus()

    def show_title(self, *_args) -> None:
        conv = self.session.conversation
        self.title.setText(conv.title if conv else self.tr("New conversation"))

    def _on_storage_error(self, message: str) -> None:
        self.notice.show_message(self.tr("The chat could not be saved: {0}").format(message))

    def _on_storage_unsaved(self, reason: str) -> None:
        self.notice.show_message(self.tr("The chat is not saved yet ({0}). It is kept, and saved as soon as the "
                                         "disk takes it: free some disk space.").format(reason), kind="unsaved")

    def _on_storage_saved_again(self) -> None:
        if self.notice.kind == "unsaved":
            self.notice.clear()
        self.status.showMessage(self.tr("The chat is saved."), 5000)

    def _on_copied(self, _uid: str) -> None:
        self.status.showMessage(self.tr("Copied."), 2000)

    # -- settings -----------------------------------------------------------------------------------

    def save_prefs(self) -> None:
        try:
            save_preferences(self.prefs, self.home)
        except OSError as exc:
            self.notice.show_message(self.tr("The settings could not be saved: {0}").format(exc))

    def open_models(self) -> None:
        """The Models page: download, add, remove, use."""
        from .models_page import ModelsDialog
        dialog = ModelsDialog(self.prefs, self.engine.choice, self, self.manifest, self.downloads)
        dialog.useRequested.connect(self.use_model)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()
        self.save_prefs()                 # models added or removed from the list
        self.model_picker.refresh(self.prefs, self.engine.choice)

    def _model_downloaded(self, *_args) -> None:
        self.model_picker.refresh(self.prefs, self.engine.choice)

    def open_general_settings(self) -> None:
        self.open_settings("general")

    def open_model_settings(self) -> None:
        self.open_settings("model")

    def open_settings(self, page: str = "general") -> None:
        from .settings_dialog import SettingsDialog
        shown = self.prefs
        failed = self.engine.failed_choice
        if failed is not None and not self.engine.loading and failed != self.engine.choice:
            shown = replace(self.prefs, model=failed)  # the choice that failed, to be corrected
        dialog = SettingsDialog(shown, self, page=page, api_address=self.api_address, downloads=self.downloads,
                                states_shown=self.status.set_state_cache)
        try:
            accepted = dialog.exec()
            new = dialog.result_prefs() if accepted else None
        finally:
            dialog.deleteLater()  # a dialog kept as the window's child until exit is destroyed with it, late
        if new is not None:
            self.apply_prefs(new)

    def apply_prefs(self, new: Preferences) -> None:
        old = copy.deepcopy(self.prefs)
        self.prefs.__dict__.update(copy.deepcopy(new).__dict__)  # the session holds the same object
        self.prefs.model = old.model                              # replaced once the new one has loaded
        self.save_prefs()
        from .theme import apply_theme
        apply_theme(self.prefs.theme)
        api = (new.api_server, new.api_port, new.api_key, new.api_streams)
        if api != (old.api_server, old.api_port, old.api_key, old.api_streams):   # first: a model loading next
            self.engine.set_api_server(*api)                                    # loads with its streams
        self.engine.weights_gb = new.quantized_weights_gb
        if new.quantized_weights_gb < old.quantized_weights_gb:   # a lowered limit applies now, not at a load
            self._trim_quantized_weights(new.quantized_weights_gb)
        if new.model != old.model or self.engine.info is None:
            self.load_model(new.model)
        if new.language != old.language:
            self.rebuildRequested.emit()

    def _trim_quantized_weights(self, gb: float) -> None:
        from engine.backends.cpu.weight_cache import trim
        from engine.paths import quantized_weights_dir

        from .background import Task
        Task(lambda _report: trim(quantized_weights_dir(), gb)).start()   # (a running Task keeps itself)

    def edit_conversation_settings(self) -> None:
        from .conversation_settings import ConversationSettingsDialog
        conv = self.session.conversation
        if conv is None:  # a new conversation: its settings wait for its first message
            prompt, overrides = self.session.draft_settings
            conv = Conversation("", self.tr("New conversation"), 0, 0, prompt, overrides)
        dialog = ConversationSettingsDialog(conv, self.prefs.chat, self)
        try:
            values = dialog.values() if dialog.exec() else None
        finally:
            dialog.deleteLater()
        if values is not None:
            self.set_conversation_settings(*values)

    def set_conversation_settings(self, system_prompt: str | None, overrides: dict) -> None:
        """The current conversation's own system prompt (None: the default) and generation settings."""
        conv = self.session.conversation
        if conv is None:
            self.session.set_draft_settings(system_prompt, overrides)
            return
        conv.system_prompt, conv.settings = system_prompt, overrides
        self.storage.call("set_conversation_settings", conv.uid, system_prompt, overrides)

    # -- closing ------------------------------------------------------------------------------------

    def hand_over(self) -> None:
        """Close this window without closing the services: a new window takes them."""
        self._handed_over = True
        self.close()

    def closeEvent(self, event) -> None:
        if not self._handed_over and not self._quit_asked and self.downloads.receiving:
            if not self.quit_during_download():
                event.ignore()
                return
        if self.session.answering and not self._handed_over:
            # stop the answer, let its end be saved, then close (at most CLOSE_WAIT_MS later)
            event.ignore()
            if not self._closing:
                self._closing = True
                self.status.showMessage(self.tr("Stopping the answer…"))
                self.session.answeringChanged.connect(self._close_when_idle)
                self.session.stop()
                QTimer.singleShot(CLOSE_WAIT_MS, self._close_anyway)
            return
        self.engine.cancel_load()
        if self.owns_services and not self._handed_over:
            self.services.close()
        event.accept()

    def quit_during_download(self) -> bool:
        """Ask before quitting under a running download; on "Quit", pause it (Services.close waits for it)."""
        from .download_panel import ask_quit_during_download
        self._quit_asked = ask_quit_during_download(self, self.downloads.model)
        if self._quit_asked:
            self.downloads.cancel()          # the .part is kept: the next download of it resumes
        return self._quit_asked

    def _close_when_idle(self, answering: bool) -> None:
        if not answering:
            self.close()

    def _close_anyway(self) -> None:
        if self.session.streaming:
            log.error("the answer did not stop within %d ms; closing anyway", CLOSE_WAIT_MS)
            answer = self.session.streaming[1]
            self.session._end(answer.uid, answer.content, "cancelled", {}, False)
        self.close()
