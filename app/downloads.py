"""The app's model download: it belongs to the app, not to the dialog that started it.

As in LM Studio, closing the Models dialog leaves a download running; the main window's status bar
shows its progress and the dialog shows it again when reopened. Quitting pauses it: the downloader
is cancelled, which keeps its ``.part``, and the next download of that model resumes from there.
One download runs at a time (the dialogs offer Download only when none runs). Pause and Cancel are
``threading.Event``s the downloader polls; its progress events reach the UI thread through ``Task``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from .background import Task

STOP_WAIT_S = 5.0                         # at exit: how long the downloader may take to close its .part


class Downloads(QObject):
    started = Signal(str)                 # model name
    progressed = Signal(object)           # checkpoint_download's ProgressEvent
    pausedChanged = Signal(bool)
    finished = Signal(str, object)        # model name, the paths of its files (verified and in place)
    failed = Signal(str, object)          # model name, the exception (DownloadCancelled when cancelled)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.model: str | None = None     # the model being (or last) downloaded
        self.dest: Path | None = None
        self.last_event = None            # its latest ProgressEvent: what a dialog opened later shows first
        self.task: Task | None = None
        self.cancel_event = threading.Event()
        self.pause_event = threading.Event()

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    @property
    def paused(self) -> bool:
        return self.running and self.pause_event.is_set()

    @property
    def receiving(self) -> bool:
        """Running and not paused: what quitting would interrupt."""
        return self.running and not self.pause_event.is_set()

    def start(self, model: str, dest: Path, manifest: Path | None = None) -> bool:
        """Download ``model``'s files into ``dest`` (``manifest``: another models.yaml, for tests); False when
        a download is already running."""
        if self.running:
            return False
        self.model, self.dest, self.last_event = model, Path(dest), None
        self.cancel_event, self.pause_event = threading.Event(), threading.Event()
        cancel, pause = self.cancel_event, self.pause_event
        extra = {"manifest": manifest} if manifest else {}

        def job(report):
            from checkpoint_download import download_model
            return download_model(model, dest=dest, progress=report, cancel=cancel, pause=pause, **extra)
        self.task = Task(job, then=self._finished, otherwise=self._failed, progress=self._progress)
        self.task.start()
        self.started.emit(model)
        return True

    def toggle_pause(self) -> None:
        if not self.running:
            return
        if self.pause_event.is_set():
            self.pause_event.clear()
        else:
            self.pause_event.set()
        self.pausedChanged.emit(self.pause_event.is_set())

    def cancel(self) -> None:
        """Stop; the ``.part`` is kept, so the next download of this model resumes where this one stopped."""
        self.cancel_event.set()
        self.pause_event.clear()

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """The app is quitting: cancel (the ``.part`` is kept) and give the downloader a moment to close it."""
        if not self.running:
            return
        self.cancel()
        task, self.task = self.task, None
        task.detach()
        task.thread.join(wait_s)

    def _progress(self, event) -> None:
        self.last_event = event
        self.progressed.emit(event)

    def _finished(self, paths) -> None:
        self.finished.emit(self.model, paths)

    def _failed(self, exc) -> None:
        self.failed.emit(self.model, exc)
