"""The status bar: model, backend, weight format, RAM used, context used / limit, load progress, and a model
download that goes on while no dialog shows it (a click opens the Models page)."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from .download_panel import human_bytes
from .theme import tool_button

RAM_REFRESH_MS = 2000


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n < 10e9 else f"{n / 1e9:.1f} GB"


def state_size_text(n: int) -> str:
    """Saved states of a small model take megabytes: "3.2 MB", not "0.00 GB"."""
    return gigabytes(n) if n >= 1e9 else f"{n / 1e6:.1f} MB"


class StatusBar(QStatusBar):
    cancelLoad = Signal()
    openModels = Signal()                 # the download's progress was clicked

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = QLabel(self.tr("No model loaded"))
        self.backend = QLabel()
        self.ram = QLabel()
        self.context = QLabel()
        self.state_cache = QLabel()
        self.state_cache.setToolTip(self.tr("Saved conversation states: a conversation's state is read back instead "
                                            "of the whole conversation being read again"))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.cancel = QPushButton(self.tr("Cancel"))
        self.cancel.clicked.connect(self.cancelLoad)
        self.download = tool_button(self, "", self.tr("Show the download in the Models window"), self.openModels)
        self.download.hide()
        self.downloads = None
        for widget in (self.model, self.backend, self.progress, self.cancel, self.download):
            self.addWidget(widget)
        for widget in (self.context, self.state_cache, self.ram):
            self.addPermanentWidget(widget)
        self.show_loading(False)
        self._timer = QTimer(self, interval=RAM_REFRESH_MS)
        self._timer.timeout.connect(self.refresh_ram)
        self._timer.start()  # the first reading comes after the first paint: it imports the engine

    def refresh_ram(self) -> None:
        from engine import current_rss_bytes  # light: no MindSpore
        used = current_rss_bytes()
        self.ram.setText(self.tr("RAM {0}").format(gigabytes(used)) if used else "")

    def show_model(self, info) -> None:
        """``info``: the engine's ModelInfo, or None when no model is loaded."""
        if info is None:
            self.model.setText(self.tr("No model loaded"))
            self.backend.setText("")
            self.context.setText("")
            return
        self.model.setText(info.name)
        self.backend.setText(self.tr("{0} on {1} · {2}").format(info.executor, info.device, info.weight_format))
        self.set_context(0, info.context_length)

    def set_state_cache(self, size: int | None) -> None:
        self.state_cache.setText(self.tr("Saved states {0}").format(state_size_text(size)) if size else "")

    def follow(self, downloads) -> None:
        """Show ``downloads`` (app/downloads.py) while it runs, and a line when it ends."""
        self.downloads = downloads
        downloads.started.connect(self.show_download)
        downloads.progressed.connect(self.show_download)
        downloads.pausedChanged.connect(self.show_download)
        downloads.finished.connect(self._download_finished)
        downloads.failed.connect(self._download_failed)
        self.show_download()

    def show_download(self, *_args) -> None:
        from .model_catalog import TITLES
        d = self.downloads
        running = bool(d and d.running)
        self.download.setVisible(running)   # (isVisible() would say False while the window is not shown yet)
        if not running:
            return
        title, event = TITLES.get(d.model, d.model), d.last_event
        done = event.done_bytes if event else 0
        total = event.total_bytes if event else None
        share = f"{100 * done / total:.0f}%" if total else human_bytes(done)
        where = f"{event.file} {share}" if event else share      # a model is several files: which one, how far
        if d.paused:
            self.download.setText(self.tr("{0}: download paused ({1})").format(title, where))
        else:
            speed = human_bytes(event.speed_bps) if event else "?"
            self.download.setText(self.tr("Downloading {0}: {1} · {2}/s").format(title, where, speed))

    def _download_finished(self, model: str, _paths) -> None:
        from .model_catalog import TITLES
        self.download.hide()
        self.showMessage(self.tr("{0} is downloaded: choose it in the model list.").format(TITLES.get(model, model)),
                         15_000)

    def _download_failed(self, model: str, exc) -> None:
        from .model_catalog import TITLES
        self.download.hide()
        if type(exc).__name__ != "DownloadCancelled":
            self.showMessage(self.tr("The download of {0} stopped: {1}").format(TITLES.get(model, model), exc), 30_000)

    def set_context(self, used: int, limit: int) -> None:
        self.context.setText(self.tr("Context {0} / {1}").format(used, limit) if limit else "")

    def show_loading(self, loading: bool, stage: str = "", done: int = 0, total: int = 0) -> None:
        self.progress.setVisible(loading)
        self.cancel.setVisible(loading)
        if loading:
            self.progress.setRange(0, 1000 if total else 0)
            self.progress.setValue(int(1000 * done / total) if total else 0)
            self.progress.setFormat(f"{stage} %p%" if total else stage)
            self.model.setText(self.tr("Loading the model…"))
