"""The main window: conversations on the left, the chat on the right, the model's state at the bottom.

It wires the views to the chat logic (``ChatSession``), the history's thread (``Storage``) and the
model's thread (``EngineHost``). Both threads may outlive one window (``Services``): changing the
language builds a new window on the same model and history.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from engine.paths import HISTORY_FILE

from .background import Task
from .chat_session import ChatSession
from .composer import Composer
from .conversation_list import ConversationList
from .engine_worker import EngineHost
from .export import safe_file_name
from .message_view import MessageView
from .model_picker import ModelPicker
from .notice_bar import NoticeBar
from .preferences import ModelChoice, Preferences, save_preferences
from .status_bar import StatusBar
from .storage import Conversation
from .storage_worker import Storage

CLOSE_WAIT_MS = 15_000
log = logging.getLogger(__name__)


def check_cpu(_report) -> dict:
    from engine.cpu_info import cpu_report
    return cpu_report()


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
        self.cpu: dict | None = None      # this computer's CPU and memory, once checked
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
        worker = self.engine.worker
        worker.progress.connect(self._on_progress)
        worker.loaded.connect(self._on_loaded)
        worker.loadFailed.connect(self._on_load_failed)
        worker.unloaded.connect(self._on_unloaded)  # (a lambda would also run on the engine thread)
        worker.apiState.connect(self._on_api_state)
        worker.stateCacheSize.connect(self.status.set_state_cache)
        self.status.cancelLoad.connect(self.engine.cancel_load)
        self.storage.error.connect(self._on_storage_error)
        self.messages.copied.connect(self._on_copied)
        self.composer.send.connect(self.session.send)
        self.composer.stop.connect(self.session.stop)
        self.composer.notReady.connect(self._explain_not_ready)
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
        self.conversations.renamed.connect(self.rename)
        self.conversations.deleted.connect(self.delete)
        self.conversations.exportRequested.connect(self.export)
        self.conversations.searchChanged.connect(self._search)
        self.composer.set_ready(self.engine.info is not None)

    # -- start-up and the model -------------------------------------------------------------------------

    def start(self, load_model: bool = True) -> None:
        """After the window is on screen: read the list of conversations (and show the last one), check the
        CPU, then load the model."""
        self.storage.call("conversations", then=self._conversations_read)
        self._cpu_task = Task(check_cpu, then=self._cpu_checked).start()
        if self.engine.info is not None:
            self._on_loaded(self.engine.info)
        if load_model:
            self.load_model(self.prefs.model)

    def load_model(self, choice: ModelChoice) -> None:
        """Load ``choice``; it becomes the saved choice only once it has loaded (a bad file is never kept)."""
        self.notice.clear()
        self.composer.set_ready(False)
        self.status.show_loading(True, self.tr("Starting"))
        self.engine.load(choice)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.status.show_loading(True, stage_text(stage), done, total)

    def focus_input(self, *_args) -> None:
        """After a button (Stop, Regenerate, a notice's) typing goes to the message box again."""
        self.composer.input.setFocus()

    def stop_answer(self) -> None:
        if self.session.answering:
            self.session.stop()
            self.focus_input()

    def _explain_not_ready(self) -> None:
        if self.engine.loading:
            text = self.tr("The model is still loading; your message stays in the box. Press Enter again once "
                           "it is ready (see the status bar).")
        elif self.notice.kind == "load":
            return                        # the message why no model is loaded is on screen already
        else:
            text = self.tr("No model is loaded: choose one in Settings > Model.")
        self.notice.show_message(text, kind="wait")

    def _cpu_checked(self, report: dict) -> None:
        self.cpu = report
        if not report["fast"] and not self.notice.isVisible():
            from .about_dialog import slow_cpu_text
            self.notice.show_message(slow_cpu_text(report), kind="info")

    def open_about(self) -> None:
        from .about_dialog import AboutDialog
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
        self._show_title()
        self.conversations.set_busy(self.session.streaming[0] if self.session.streaming else None)
        if not answering and self.notice.kind == "busy":
            self.notice.clear()

    def _conversation_shown(self) -> None:
        self._show_title()
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

    def _on_loaded(self, info) -> None:
        if self.engine.choice is not None and self.engine.choice != self.prefs.model:
            self.prefs.model = copy.deepcopy(self.engine.choice)   # it works: keep it for the next start
            self.save_prefs()
        self.status.show_loading(False)
        self.status.show_model(info)
        self.model_picker.refresh(self.prefs, self.engine.choice)
        self.composer.set_ready(True)
        if self.notice.kind in ("load", "wait"):
            self.notice.clear()
        if self.prefs.api_server:
            self.engine.set_api_server(True, self.prefs.api_port)
        self.session.report_context()
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
        choice, actions = self.engine.failed_choice or self.prefs.model, []
        if hint.get("suggested_format") == "int8":
            actions.append((self.tr("Use 8-bit weights"),
                            partial(self.use_model, replace(choice, weight_format="int8"))))
        version = hint.get("suggested_version")
        if version in (2, 3) and choice.version != version:
            actions.append((self.tr("Load as LLaMA{0}").format(version),
                            partial(self.use_model, replace(choice, source=f"llama{version}"))))
        actions.append((self.tr("Model settings…"), self.open_model_settings))
        if choice.source != "builtin":
            actions.append((self.tr("Use the built-in model"),
                            partial(self.use_model, replace(choice, source="builtin"))))
        else:
            actions.append((self.tr("Try again"), partial(self.load_model, choice)))
        self.notice.show_message(message, actions, kind="load")
        self.model_picker.refresh(self.prefs, self.engine.choice)
        self.modelFailed.emit(message, hint)

    def use_model(self, choice: ModelChoice) -> None:
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

    def _show_title(self, *_args) -> None:
        conv = self.session.conversation
        self.title.setText(conv.title if conv else self.tr("New conversation"))

    def _on_storage_error(self, message: str) -> None:
        self.notice.show_message(self.tr("The chat could not be saved: {0}").format(message))

    def _on_copied(self, _uid: str) -> None:
        self.status.showMessage(self.tr("Copied."), 2000)

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

    def _search(self, text: str) -> None:
        if text:
            self.storage.call("search_snippets", text, then=self.conversations.set_matches)
        else:
            self.conversations.set_matches(None)

    def export_all(self, path: str | None = None) -> None:
        """Every conversation, with its settings and every version, and the app's model and settings, as JSON."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, self.tr("Export all conversations"),
                                                  str(Path.home() / "llama-desk conversations.json"),
                                                  self.tr("JSON (*.json)"))
            if not path:
                return
        settings = {"model": asdict(self.prefs.model), "chat": asdict(self.prefs.chat)}
        self.storage.call("export_all", path, settings, then=self._exported_all, otherwise=self._export_failed)

    def _exported_all(self, count: int) -> None:
        self.status.showMessage(self.tr("{0} conversation(s) exported.").format(count), 8000)

    def import_conversations(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, self.tr("Import conversations"), str(Path.home()),
                                                  self.tr("JSON (*.json)"))
            if not path:
                return
        self.storage.call("import", path, then=self._imported, otherwise=self._import_failed)

    def _imported(self, count: int) -> None:
        self.status.showMessage(self.tr("{0} conversation(s) imported.").format(count), 8000)
        self.storage.call("conversations", then=self.conversations.set_conversations)

    def _import_failed(self, message: str) -> None:
        self.notice.show_message(self.tr("Import failed: {0}").format(message))

    def _export_failed(self, message: str) -> None:
        self.notice.show_message(self.tr("Export failed: {0}").format(message))

    def export_current(self) -> None:
        if self.session.conversation is not None:
            self.export(self.session.conversation.uid)

    def export(self, uid: str, path: str | None = None) -> None:
        if path is None:
            title = self.conversations.title_of(uid)
            path, _ = QFileDialog.getSaveFileName(self, self.tr("Export conversation"),
                                                  str(Path.home() / f"{safe_file_name(title)}.md"),
                                                  self.tr("Markdown (*.md);;JSON (*.json)"))
            if not path:
                return
        self.storage.call("export", uid, path,
                          then=lambda p: self.status.showMessage(self.tr("Exported to {0}").format(p), 8000),
                          otherwise=self._export_failed)

    # -- settings -----------------------------------------------------------------------------------

    def save_prefs(self) -> None:
        try:
            save_preferences(self.prefs, self.home)
        except OSError as exc:
            self.notice.show_message(self.tr("The settings could not be saved: {0}").format(exc))

    def open_models(self) -> None:
        """The Models page: download, add, remove, use."""
        from .models_page import ModelsDialog
        dialog = ModelsDialog(self.prefs, self.engine.choice, self)
        dialog.useRequested.connect(self.use_model)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()
        self.save_prefs()                 # models added or removed from the list
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
        dialog = SettingsDialog(shown, self, page=page, api_address=self.api_address)
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
        if new.model != old.model or self.engine.info is None:
            self.load_model(new.model)
        if (new.api_server, new.api_port) != (old.api_server, old.api_port) and self.engine.info is not None:
            self.engine.set_api_server(new.api_server, new.api_port)
        if new.language != old.language:
            self.rebuildRequested.emit()

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

    def _close_when_idle(self, answering: bool) -> None:
        if not answering:
            self.close()

    def _close_anyway(self) -> None:
        if self.session.streaming:
            log.error("the answer did not stop within %d ms; closing anyway", CLOSE_WAIT_MS)
            answer = self.session.streaming[1]
            self.session._end(answer.uid, answer.content, "cancelled", {}, False)
        self.close()
