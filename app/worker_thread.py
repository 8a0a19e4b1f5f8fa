"""The thread the app's workers live on: a QThread whose event loop runs inside one Python call.

With a plain QThread, PySide gives every slot call a fresh Python thread state. MindSpore keeps
the thread state it first saw on a thread (when the model loads) and takes the GIL with it again
on later calls: the next answer would deadlock the whole app. Running ``exec()`` from a Python
``run()`` keeps one thread state for the thread's whole life.
"""

from __future__ import annotations

from PySide6.QtCore import QThread


class WorkerThread(QThread):
    def __init__(self, name: str):
        super().__init__()
        self.setObjectName(name)

    def run(self) -> None:
        self.exec()
