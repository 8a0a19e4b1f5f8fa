"""Qt objects that become garbage in a reference cycle are deleted on the window's thread, never on the thread
whose allocation happened to cross the collector's threshold (the engine's, in the app): deleted there, a running
timer stayed registered and its next tick crashed the process."""

from __future__ import annotations

import gc
import threading


def test_a_qt_object_in_a_garbage_cycle_dies_on_the_window_thread(qtbot, app_qt):
    from PySide6.QtCore import QObject, QTimer

    from app.main_thread_gc import MainThreadCollector

    assert app_qt.findChild(MainThreadCollector) is not None and not gc.isenabled()
    gc.collect()
    deleted_on = []

    class Holder(QObject):
        """A QObject with a running timer, kept alive only by a cycle through its Python attributes."""

        def __init__(self):
            super().__init__()
            self.timer = QTimer(self, interval=5)
            self.timer.start()
            self.me = self

        def __del__(self):
            deleted_on.append(threading.current_thread())

    Holder()

    def allocate_like_the_engine():
        # cyclic garbage well past generation 0's threshold: the automatic collector would run here, on this thread
        for _ in range(20 * gc.get_threshold()[0]):
            cycle = []
            cycle.append(cycle)

    worker = threading.Thread(target=allocate_like_the_engine, name="engine-like")
    worker.start()
    worker.join()
    assert deleted_on == []                      # the worker's allocations collected nothing
    qtbot.waitUntil(lambda: bool(deleted_on), timeout=5_000)
    assert deleted_on == [threading.main_thread()]
