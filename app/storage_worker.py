"""The chat history on its own thread, so a slow disk never freezes the window.

``Storage`` (UI thread) sends requests as queued signals to ``StorageWorker`` (storage thread),
which owns the only SQLite connection. Replies come back as signals and run the caller's
callback on the UI thread. Streamed answer text may be sent straight from the engine's thread
(``append_text``); it is gathered and committed every ``FLUSH_MS``, so a killed process loses at
most the last quarter second of an answer.

When the disk refuses a write (full, or failing), nothing is dropped: the streamed text and the
writes (a question, an answer's end, a rename, a delete) are kept in order and tried again before
every later request and every ``RETRY_MS``, so freeing disk space saves the whole chat as the window
shows it. The window is told once (``unsaved``) and again when all is written (``saved_again``).
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from .export import write_export
from .storage import ChatStore, StorageError
from .worker_thread import WorkerThread

FLUSH_MS = 250
RETRY_MS = 5000
# ChatStore's writes: kept for a retry when the disk refuses them (one that is waited for is also answered
# with the refusal: the model does not answer a question that is not on disk yet)
WRITES = frozenset({"create_conversation", "add_messages", "finish_message", "rename_conversation",
                    "delete_conversation", "reopen_message", "set_conversation_settings"})
log = logging.getLogger(__name__)


class StorageWorker(QObject):
    replied = Signal(int, object)        # request id, result
    failed = Signal(int, str)            # request id (0: nobody waits), message for the user
    unsaved = Signal(str)                # the disk refused a write; it is kept and retried (the reason)
    saved_again = Signal()               # everything kept after ``unsaved`` is written

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.store: ChatStore | None = None
        self._pending: dict[str, str] = {}
        self._timer = QTimer(self)       # a child: it moves to the storage thread with its parent
        self._timer.setSingleShot(True)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self._flush)
        self._waiting: list[tuple[str, tuple]] = []   # writes the disk refused, in the order they were sent
        self._refused = False                          # the window was told of unsaved work (``unsaved``)
        self._refusal = ""                             # the disk's last refusal, for who waits for a write
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.setInterval(RETRY_MS)
        self._retry.timeout.connect(self._save_waiting)

    def _open(self) -> ChatStore:
        if self.store is None:
            self.store = ChatStore(self.path)
        return self.store

    @Slot(str, object, int)
    def run(self, op: str, args: tuple, request_id: int) -> None:
        self._save_waiting()   # earlier refused writes and streamed text first: the order they were sent in
        if op in WRITES and self._waiting:             # the disk still refuses: behind the writes it refused
            self._waiting.append((op, args))
            if request_id:     # who waits for it hears that it is not written (no answer to an unsaved question)
                self.failed.emit(request_id, self._refusal)
            return
        try:
            handler = getattr(self, "op_" + op, None)
            result = handler(*args) if handler else getattr(self._open(), op)(*args)
        except (sqlite3.OperationalError, OSError) as exc:
            if op in WRITES:                           # kept all the same: the window shows what it sent
                self._keep([(op, args)], exc)
                if request_id:
                    self.failed.emit(request_id, str(exc))
                return
            self._fail(op, request_id, exc)
            return
        except (StorageError, sqlite3.Error) as exc:
            self._fail(op, request_id, exc)
            return
        if request_id:
            self.replied.emit(request_id, result)

    def _fail(self, op: str, request_id: int, exc: Exception) -> None:
        log.warning("storage %s failed: %s", op, exc)
        self.failed.emit(request_id, str(exc))

    def _keep(self, writes: list[tuple[str, tuple]], exc: Exception) -> None:
        """The disk refused these writes: keep them for a retry, and tell the window once."""
        self._waiting.extend(writes)
        self._refusal = str(exc)
        self._retry.start()
        if not self._refused:
            self._refused = True
            log.warning("the chat history could not be written (%s): kept, retried every %d ms", exc, RETRY_MS)
            self.unsaved.emit(str(exc))

    @Slot()
    def _save_waiting(self) -> bool:
        """Write what the disk refused before, in order, then the streamed text; True when nothing is left."""
        while self._waiting:
            op, args = self._waiting[0]
            try:
                getattr(self._open(), op)(*args)
            except (sqlite3.OperationalError, OSError):
                self._retry.start()
                return False
            except (StorageError, sqlite3.Error) as exc:   # not the disk: retrying cannot help
                log.warning("storage %s failed: %s", op, exc)
            self._waiting.pop(0)
        self._flush()
        if self._refused and not self._waiting and not self._pending:
            self._refused = False
            log.info("the chat history is written again")
            self.saved_again.emit()
        return not self._waiting and not self._pending

    @Slot(str, str)
    def append_text(self, message_uid: str, text: str) -> None:
        self._pending[message_uid] = self._pending.get(message_uid, "") + text
        if not self._timer.isActive():
            self._timer.start()

    @Slot()
    def _flush(self) -> None:
        if not self._pending or self._waiting:   # an answer's text waits for its refused message row
            return
        pieces, self._pending = self._pending, {}
        try:
            self._open().append_texts(pieces)
        except (sqlite3.OperationalError, OSError) as exc:
            for uid, text in pieces.items():       # kept, before whatever streamed in since
                self._pending[uid] = text + self._pending.get(uid, "")
            self._keep([], exc)
        except (StorageError, sqlite3.Error) as exc:
            self.failed.emit(0, str(exc))

    def op_load(self, conversation_uid: str):
        store = self._open()
        return store.conversation(conversation_uid), store.messages(conversation_uid)

    def op_show_version(self, conversation_uid: str, message_uid: str, step: int):
        self._open().show_version(message_uid, step)
        return self.op_load(conversation_uid)

    def op_export_all(self, path: str, app_settings: dict) -> int:
        from .chat_archive import export_all
        return export_all(self._open(), path, app_settings)

    def op_import(self, path: str) -> int:
        from .chat_archive import import_archive
        return import_archive(self._open(), path)

    def op_export(self, conversation_uid: str, path: str) -> str:
        conversation, messages = self.op_load(conversation_uid)
        if conversation is None:
            raise StorageError("This conversation no longer exists.")
        return str(write_export(path, conversation, messages))

    def op_close(self) -> None:
        self._timer.stop()
        self._retry.stop()
        if not self._save_waiting():
            log.error("closing with %d refused writes and %d answers' streamed text not written: the disk still "
                      "refuses them", len(self._waiting), len(self._pending))
        if self.store is not None:
            self.store.close()
            self.store = None
        # back to the main thread, where this object (and its timer) will be destroyed
        self.moveToThread(QCoreApplication.instance().thread())
        QThread.currentThread().quit()   # after every request sent before this one


class Storage(QObject):
    """The UI thread's handle: ``call(op, *args, then=callback)``; errors go to ``error``."""

    error = Signal(str)
    unsaved = Signal(str)        # the disk refused a write: kept and retried (``StorageWorker``)
    saved_again = Signal()       # and now it is written
    _request = Signal(str, object, int)

    def __init__(self, path: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.path = Path(path)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self.thread = WorkerThread("storage")
        self.worker = StorageWorker(self.path)
        self.worker.moveToThread(self.thread)
        self._request.connect(self.worker.run)
        self.worker.replied.connect(self._on_reply)
        self.worker.failed.connect(self._on_failed)
        self.worker.unsaved.connect(self.unsaved)
        self.worker.saved_again.connect(self.saved_again)
        self.thread.start()

    def call(self, op: str, *args, then: Callable | None = None, otherwise: Callable | None = None) -> None:
        request_id = next(self._ids) if (then or otherwise) else 0
        if request_id:
            self._callbacks[request_id] = (then, otherwise)
        self._request.emit(op, args, request_id)

    @Slot(int, object)
    def _on_reply(self, request_id: int, result) -> None:
        then, _ = self._callbacks.pop(request_id, (None, None))
        if then:
            then(result)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        _, otherwise = self._callbacks.pop(request_id, (None, None))
        if otherwise:
            otherwise(message)
        else:
            self.error.emit(message)

    def close(self, timeout_ms: int = 10_000) -> None:
        """Write what is pending, close the file and end the thread (waits for the disk, at exit only)."""
        if self.thread.isRunning():
            self._request.emit("close", (), 0)
            if not self.thread.wait(timeout_ms):
                log.error("the storage thread did not finish in %d ms", timeout_ms)
