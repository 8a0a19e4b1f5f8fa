"""Python's cycle collector, run on the window's thread only.

Left automatic, the collector runs in whichever thread happens to allocate when a threshold is
crossed: in this app usually the engine thread, which allocates for every token. A window, dialog
or other Qt object that became garbage in a reference cycle was then deleted there, from the wrong
thread: Qt cannot stop a timer from another thread, so the timer stayed registered with the window
thread's event loop and its next tick called into freed memory (the test suite's segfault in
QTimerInfoList::activateTimers, 2 full runs in 3). Here automatic collection is off and a timer on the
window's thread does the collector's work at the same thresholds: Qt objects die on their own thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

CHECK_MS = 500   # garbage in cycles lives at most this much longer than it would with the automatic collector


def collect_due() -> int:
    """What the automatic collector would do now: the generations whose counts passed their thresholds."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if counts[0] <= thresholds[0]:
        return 0
    generation = 0
    if counts[1] > thresholds[1]:
        generation = 1
        if counts[2] > thresholds[2]:
            generation = 2
    return gc.collect(generation)


class MainThreadCollector(QObject):
    """Turns automatic collection off and collects from a timer of the thread that made it (the window's)."""

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self._timer = QTimer(self, interval=CHECK_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()
        gc.disable()

    def check(self) -> None:
        collect_due()


def install(app: QCoreApplication) -> MainThreadCollector:
    """Once per application (a child of ``app``: it lives as long as the event loop can run)."""
    existing = app.findChild(MainThreadCollector)
    return existing if existing is not None else MainThreadCollector(app)
