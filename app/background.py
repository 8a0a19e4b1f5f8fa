"""Run a short blocking job (check files, download) off the UI thread; get its result back on the UI thread.

The relay is a QObject living on the UI thread, so its signals, emitted from the job's thread,
are queued and its callbacks run on the UI thread, where they may touch widgets. It has no Qt
parent and keeps itself alive until the job has ended: a dialog closed meanwhile (and deleted)
calls ``detach`` and the job's last signals then reach nobody instead of a deleted object.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger(__name__)
_running: set["Task"] = set()             # tasks whose job may still emit: kept alive until it ends


class Task(QObject):
    _done = Signal(object)
    _failed = Signal(object)
    _progress = Signal(object)

    def __init__(self, job: Callable, then: Callable | None = None, otherwise: Callable | None = None,
                 progress: Callable | None = None):
        super().__init__()
        self._job, self._then, self._otherwise, self._on_progress = job, then, otherwise, progress
        self._done.connect(self._deliver_done)
        self._failed.connect(self._deliver_failed)
        self._progress.connect(self._deliver_progress)
        self.running = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="llama-desk task")

    def start(self) -> "Task":
        self.running = True
        _running.add(self)
        self.thread.start()
        return self

    def detach(self) -> None:
        """Deliver nothing any more (the widgets that asked are going away); the job ends on its own."""
        self._then = self._otherwise = self._on_progress = None

    def report(self, value) -> None:
        """Call from the job's thread: ``progress(value)`` runs on the UI thread."""
        self._progress.emit(value)

    def _run(self) -> None:
        try:
            result = self._job(self.report)
        except Exception as exc:  # noqa: BLE001 - handed to the UI thread, which shows its message
            if not hasattr(exc, "subject") and not type(exc).__name__.startswith("Download"):
                log.exception("background task failed")
            self._failed.emit(exc)
            return
        self._done.emit(result)

    @Slot(object)
    def _deliver_done(self, result) -> None:
        self.running = False
        _running.discard(self)
        if self._then:
            self._then(result)

    @Slot(object)
    def _deliver_failed(self, exc) -> None:
        self.running = False
        _running.discard(self)
        if self._otherwise:
            self._otherwise(exc)

    @Slot(object)
    def _deliver_progress(self, value) -> None:
        if self._on_progress:
            self._on_progress(value)
