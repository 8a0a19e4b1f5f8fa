"""Download LLaMA2 / LLaMA3 with ``checkpoint_download``: progress, speed, time left, Pause/Resume and Cancel.

The panel shows a ``Downloads`` (app/downloads.py): the app's own, which outlives the dialog (the Models
page: closing it leaves the download running and reopening it shows it again), or one of its own that
stops with it (``stop_work``); a stopped download keeps its ``.part`` and resumes next time. Files go
where the engine looks for them by default: the models folder the form around it shows (``starting``
lets it keep that folder first).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .downloads import Downloads


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


def ask_quit_during_download(parent: QWidget, model: str) -> bool:
    """Quitting while a model downloads: True for "Quit and pause the download", False for "Keep running"."""
    from .model_catalog import TITLES
    question = QCoreApplication.translate(
        "DownloadPanel", "{0} is still downloading. Quit now and pause the download (it resumes where it stopped "
                         "when you download it again), or keep it running?").format(TITLES.get(model, model))
    box = QMessageBox(QMessageBox.Icon.Question, QCoreApplication.translate("DownloadPanel", "A download is running"),
                      question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.button(QMessageBox.StandardButton.Yes).setText(
        QCoreApplication.translate("DownloadPanel", "Quit and pause the download"))
    box.button(QMessageBox.StandardButton.No).setText(QCoreApplication.translate("DownloadPanel", "Keep running"))
    box.setDefaultButton(QMessageBox.StandardButton.No)
    try:
        return box.exec() == QMessageBox.StandardButton.Yes
    finally:
        box.deleteLater()


class DownloadPanel(QWidget):
    downloaded = Signal(str)              # model name ("llama2"), once every file is verified and in place
    starting = Signal(str)                # model name, just before its download starts

    def __init__(self, parent=None, downloads: Downloads | None = None):
        super().__init__(parent)
        self.model = "llama2"
        self.models_folder: Path | None = None  # None: engine.paths' models folder
        self.manifest = None              # another models.yaml (tests); None: checkpoint_download's own
        self.owns_downloads = downloads is None  # its own: stopped with the panel; the app's: left running
        self.downloads = downloads or Downloads(self)
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
        self._follow(True)
        self.set_model("llama2")
        if self.running:                  # started earlier (another dialog, since closed): show where it is
            self._show_title(self.downloads.model, self.downloads.dest)
            if self.downloads.last_event is not None:
                self._progress(self.downloads.last_event)
            else:
                self.detail.setText(self.tr("Starting…"))
        self._set_running(self.running)

    def _follow(self, on: bool) -> None:
        """Connect to (or leave) the download's signals; bound methods only (see MainWindow._connect)."""
        pairs = ((self.downloads.progressed, self._progress), (self.downloads.pausedChanged, self._paused),
                 (self.downloads.finished, self._finished), (self.downloads.failed, self._failed),
                 (self.downloads.started, self._started))
        for signal, slot in pairs:
            signal.connect(slot) if on else signal.disconnect(slot)

    def set_model(self, name: str, models_folder: Path | None = None) -> None:
        if self.running:
            return
        self.model, self.models_folder = name, models_folder
        self._show_title(name, self.destination())
        self.bar.setValue(0)
        self.detail.setText("")

    def _show_title(self, name: str, folder: Path) -> None:
        from .model_catalog import TITLES
        text = self.tr("Download {0} into {1}. Mirrors are tried in turn; an interrupted download resumes where it "
                       "stopped.").format(TITLES.get(name, name), folder)
        if not self.owns_downloads:
            text += " " + self.tr("It goes on when this window is closed: the status bar shows it.")
        self.title.setText(text)

    def destination(self) -> Path:
        """The folder the current model's files go to: its folder in the models folder, where the engine and
        the Models page look for it."""
        from checkpoint_download import list_models
        from engine.paths import models_dir
        specs = {m.name: m for m in (list_models(self.manifest) if self.manifest else list_models())}
        return Path(self.models_folder or models_dir()) / specs[self.model].folder_name

    @property
    def running(self) -> bool:
        return self.downloads.running

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.pause_button.setText(self.tr("Resume") if running and self.downloads.paused else self.tr("Pause"))

    def start(self) -> None:
        if self.running:
            return
        self.starting.emit(self.model)
        self.downloads.start(self.model, self.destination(), self.manifest)

    def _started(self, model: str) -> None:
        self._show_title(model, self.downloads.dest)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.detail.setText(self.tr("Starting…"))
        self._set_running(True)

    def toggle_pause(self) -> None:
        self.downloads.toggle_pause()

    def _paused(self, _paused: bool) -> None:
        self._set_running(self.running)

    def cancel(self) -> None:
        self.downloads.cancel()

    def stop_work(self) -> None:
        """Going away: its own download is cancelled (its ``.part`` is kept and resumed next time); the app's
        goes on, shown by the status bar."""
        if self.owns_downloads:
            self.downloads.stop(wait_s=0)
        else:
            self._follow(False)

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

    def _finished(self, model: str, paths) -> None:
        self._set_running(False)
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self.detail.setText(self.tr("Done: {0} file(s) verified and in place.").format(len(paths)))
        self.downloaded.emit(model)

    def _failed(self, _model: str, exc) -> None:
        self._set_running(False)
        self.bar.setRange(0, 1000)
        self.detail.setText(str(exc) or type(exc).__name__)
