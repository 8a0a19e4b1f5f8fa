"""Download LLaMA2 / LLaMA3 with ``checkpoint_download``: progress, speed, time left, Pause/Resume and Cancel.

The download runs on its own thread; its progress events are queued to the UI thread. Pause and
Cancel are ``threading.Event``s the downloader polls; a cancelled or interrupted download keeps its
``.part`` and resumes next time. Files go where the engine looks for them by default: the models
folder the form around it shows (``starting`` lets it keep that folder first).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .background import Task



def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class DownloadPanel(QWidget):
    downloaded = Signal(str)              # model name ("llama2"), once every file is verified and in place
    starting = Signal(str)                # model name, just before its download starts

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = "llama2"
        self.models_folder: Path | None = None  # None: engine.paths' models folder
        self.manifest = None              # another models.yaml (tests); None: checkpoint_download's own
        self.task: Task | None = None
        self.cancel_event = threading.Event()
        self.pause_event = threading.Event()
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.start_button = QPushButton(self.tr("Download"))
        self.pause_button = QPushButton(self.tr("Pause"))
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        self._set_running(False)
        self.set_model("llama2")

    def set_model(self, name: str, models_folder: Path | None = None) -> None:
        if self.running:
            return
        self.model, self.models_folder = name, models_folder
        folder = self.destination()
        self.title.setText(self.tr("Download {0} into {1}. Mirrors are tried in turn; an interrupted download "
                                   "resumes where it stopped.").format(name.replace("llama", "LLaMA"), folder))
        self.bar.setValue(0)
        self.detail.setText("")

    def destination(self) -> Path:
        """The folder the current model's files go to: its folder in the models folder, where the engine and
        the Models page look for it."""
        from checkpoint_download import list_models
        from engine.paths import models_dir
        specs = {m.name: m for m in (list_models(self.manifest) if self.manifest else list_models())}
        return Path(self.models_folder or models_dir()) / specs[self.model].folder_name

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.pause_button.setText(self.tr("Pause"))

    def start(self) -> None:
        if self.running:
            return
        self.starting.emit(self.model)
        self.cancel_event, self.pause_event = threading.Event(), threading.Event()
        name, cancel, pause = self.model, self.cancel_event, self.pause_event
        dest = self.destination()
        extra = {"manifest": self.manifest} if self.manifest else {}

        def job(report):
            from checkpoint_download import download_model
            return download_model(name, dest=dest, progress=report, cancel=cancel, pause=pause, **extra)
        self.detail.setText(self.tr("Starting…"))
        self.task = Task(job, then=self._finished, otherwise=self._failed, progress=self._progress)
        self.task.start()
        self._set_running(True)

    def toggle_pause(self) -> None:
        if self.pause_event.is_set():
            self.pause_event.clear()
            self.pause_button.setText(self.tr("Pause"))
        else:
            self.pause_event.set()
            self.pause_button.setText(self.tr("Resume"))

    def cancel(self) -> None:
        self.cancel_event.set()
        self.pause_event.clear()

    def stop_work(self) -> None:
        """Going away: cancel a running download (its ``.part`` is kept and resumed next time)."""
        if self.running:
            self.cancel()
            self.task.detach()

    def _progress(self, event) -> None:
        total = event.total_bytes
        self.bar.setRange(0, 1000 if total else 0)
        if total:
            self.bar.setValue(int(1000 * event.done_bytes / total))
        text = self.tr("{0}: {1} of {2} · {3}/s · {4} left").format(
            event.file, human_bytes(event.done_bytes), human_bytes(total), human_bytes(event.speed_bps),
            human_time(event.eta_s))
        if event.state.value == "paused":
            text = self.tr("{0}: paused at {1}").format(event.file, human_bytes(event.done_bytes))
        if event.message:
            text += "\n" + event.message
        self.detail.setText(text)

    def _finished(self, paths) -> None:
        self._set_running(False)
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self.detail.setText(self.tr("Done: {0} file(s) verified and in place.").format(len(paths)))
        self.downloaded.emit(self.model)

    def _failed(self, exc) -> None:
        self._set_running(False)
        self.bar.setRange(0, 1000)
        self.detail.setText(str(exc) or type(exc).__name__)
