"""One running app per user-data folder: a second start brings the first window forward and leaves.

Two copies on one folder would each load a multi-GB model and write the same history. The first
start takes a lock file in the user-data folder (``QLockFile``: a lock left by a crashed copy is
recognised by its process id and taken over) and listens on a local socket named after the folder;
a second start finds the lock taken, asks the first over that socket to show its window, and exits.
On Windows the first also holds a named mutex (``engine.paths.APP_RUNNING_MUTEX``), which the
installer checks before it upgrades or uninstalls a running copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from engine.paths import APP_RUNNING_MUTEX, INSTANCE_LOCK_FILE

SHOW_REQUEST = b"show\n"
CONNECT_MS = 2000
log = logging.getLogger(__name__)


def server_name(home: Path) -> str:
    """The local socket's name: one per user-data folder (and per user, whose folders differ)."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"llama-desk-{digest}"


class SingleInstance(QObject):
    """``acquire()`` once at start: True when this is the only copy on ``home``."""

    showRequested = Signal()              # a second start asked for the window

    def __init__(self, home: Path):
        super().__init__()
        self.home = Path(home)
        self.lock = QLockFile(str(self.home / INSTANCE_LOCK_FILE))
        self.lock.setStaleLockTime(0)     # never stale by age: only when its process is gone
        self.server: QLocalServer | None = None
        self._mutex = None

    def acquire(self) -> bool:
        if not self.lock.tryLock(100):
            self._ask_first_copy()
            return False
        name = server_name(self.home)
        QLocalServer.removeServer(name)   # a socket file left by a crashed copy (not on Windows)
        self.server = QLocalServer(self)
        self.server.newConnection.connect(self._connected)
        if not self.server.listen(name):
            log.warning("cannot listen for a second start on %s: %s", name, self.server.errorString())
        self._mutex = hold_windows_mutex(APP_RUNNING_MUTEX)
        return True

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
        self.lock.unlock()
        release_windows_mutex(self._mutex)
        self._mutex = None

    def _connected(self) -> None:
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.readyRead.connect(self._read)
            socket.disconnected.connect(socket.deleteLater)

    def _read(self) -> None:
        socket = self.sender()
        if socket is not None and bytes(socket.readAll()).startswith(SHOW_REQUEST.strip()):
            log.info("a second start asked for this window")
            self.showRequested.emit()

    def _ask_first_copy(self) -> None:
        info = self.lock.getLockInfo()   # (pid, host name, app name)
        if info and info[0]:
            allow_foreground(info[0])    # Windows gives the foreground only to the process the user started
        socket = QLocalSocket()
        socket.connectToServer(server_name(self.home))
        if socket.waitForConnected(CONNECT_MS):
            socket.write(SHOW_REQUEST)
            socket.waitForBytesWritten(CONNECT_MS)
            socket.disconnectFromServer()
        else:
            log.warning("the running copy did not answer: %s", socket.errorString())


def hold_windows_mutex(name: str):
    """Windows: create the named mutex the installer looks for; its handle lives as long as we hold it."""
    if sys.platform != "win32":
        return None
    import ctypes
    handle = ctypes.windll.kernel32.CreateMutexW(None, False, name)
    return handle or None


def release_windows_mutex(handle) -> None:
    if handle and sys.platform == "win32":
        import ctypes
        ctypes.windll.kernel32.CloseHandle(handle)


def allow_foreground(pid: int) -> None:
    if sys.platform == "win32" and pid and pid != os.getpid():
        import ctypes
        ctypes.windll.user32.AllowSetForegroundWindow(int(pid))
