"""The status bar: model, backend, weight format, RAM used, context used / limit, and load progress."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

RAM_REFRESH_MS = 2000


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n < 10e9 else f"{n / 1e9:.1f} GB"


class StatusBar(QStatusBar):
    cancelLoad = Signal()

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
        for widget in (self.model, self.backend, self.progress, self.cancel):
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
        self.state_cache.setText(self.tr("Saved states {0}").format(gigabytes(size)) if size else "")

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
