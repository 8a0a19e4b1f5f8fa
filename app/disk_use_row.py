"""A Settings row for a folder of files the app keeps only to save time: what they take, Clear, maybe a limit.

Saved conversation states and the quantized weights of loaded models are both such folders: deleting them
loses nothing but time, and they can grow to gigabytes, so the user sees their size and can empty them.
Measuring and deleting run off the UI thread (a folder of several GB on a slow disk takes seconds).
"""

from __future__ import annotations

from typing import Callable

import shiboken6
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from .background import Task


class DiskUseRow(QWidget):
    """``measure()`` gives the folder's bytes and ``clear()`` empties it (both run on a worker thread);
    ``limit_gb`` adds a size limit box (0 shows "Off"); ``shown(bytes)`` is also told every size measured,
    even after the dialog holding this row has closed (``closing()``)."""

    def __init__(self, measure: Callable[[], int], clear: Callable[[], object], tooltip: str,
                 limit_gb: float | None = None, shown: Callable[[int], None] | None = None):
        super().__init__()
        self._measure, self._clear, self._shown, self._closed = measure, clear, shown, False
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        self.limit = None
        if limit_gb is not None:
            self.limit = QDoubleSpinBox(minimum=0.0, maximum=1000.0, singleStep=0.5, decimals=1, value=limit_gb,
                                        suffix=" GB")
            self.limit.setSpecialValueText(self.tr("Off"))
            line.addWidget(self.limit)
        self.used = QLabel()
        self.clear = QPushButton(self.tr("Clear"))
        self.clear.clicked.connect(self._clear_all)
        for widget in ((self.limit,) if self.limit is not None else ()) + (self.used, self.clear):
            widget.setToolTip(tooltip)
        line.addWidget(self.used)
        line.addWidget(self.clear)
        line.addStretch(1)
        self._job(lambda: None)

    def closing(self) -> None:
        """The dialog is going: a job still running tells ``shown`` only (these widgets are gone)."""
        self._closed = True

    def _job(self, change: Callable[[], object]) -> None:
        def job(_report):
            change()
            return self._measure()
        self._task = Task(job, then=self._measured).start()

    def _measured(self, size: int) -> None:
        if self._shown is not None:
            self._shown(size)
        # closed, or deleted with a dialog that was never shown (its widgets are gone; this wrapper is not)
        if not self._closed and shiboken6.isValid(self.used):
            self.used.setText(self.tr("{0:.2f} GB used").format(size / 1e9) if size >= 1e9
                              else self.tr("{0:.1f} MB used").format(size / 1e6))
            self.clear.setEnabled(size > 0)

    def _clear_all(self) -> None:
        self.clear.setEnabled(False)
        self._job(self._clear)
