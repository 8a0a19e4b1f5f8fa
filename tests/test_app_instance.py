"""One app per user-data folder: a second start brings the first window forward and leaves; a crashed copy's
lock does not block the next start; a native crash leaves its trace in logs/crash.log."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from app_fixtures import ROOT, app_command, app_env, quick_prefs
from PySide6.QtWidgets import QWidget

from engine.paths import APP_RUNNING_MUTEX, INSTANCE_LOCK_FILE


def test_a_second_start_on_the_same_data_folder_brings_the_first_window_forward_and_leaves(
        qtbot, home, engine_host, app_qt):
    from app.application import Application
    from app.main_window import Services
    from app.single_instance import SingleInstance
    from app.storage_worker import Storage

    first = SingleInstance(home)
    assert first.acquire()
    services = Services(Storage(home / "chats.sqlite3"), engine_host, owns_engine=False)
    application = Application(app_qt, quick_prefs(), home, services)
    first.showRequested.connect(application.bring_forward)
    window = application.show()
    second = None
    try:
        other = QWidget()                                  # another window has the focus now
        qtbot.addWidget(other)
        other.show()
        other.activateWindow()
        qtbot.waitUntil(other.isActiveWindow, timeout=5000)
        window.showMinimized()
        started = time.monotonic()
        second = subprocess.Popen(app_command(), env=app_env(home), cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, encoding="utf-8")
        qtbot.waitUntil(lambda: second.poll() is not None, timeout=60_000)   # our event loop answers it
        output = second.stdout.read()
        second.stdout.close()
        assert second.returncode == 0, output
        assert "llama-desk is already running" in output and time.monotonic() - started < 60
        qtbot.waitUntil(lambda: window.isActiveWindow() and not window.isMinimized(), timeout=10_000)
        assert not (home / "logs" / "app.log").read_text(encoding="utf-8").count("Traceback")
    finally:
        if second is not None and second.poll() is None:   # (a copy that did not leave)
            second.kill()
            second.wait(30)
        window.close()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
        first.release()
    assert SingleInstance(home).acquire()                  # closed: the next start is the first again


def test_the_lock_of_a_copy_that_crashed_does_not_block_the_next_start(home):
    from app.single_instance import SingleInstance

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from PySide6.QtCore import QLockFile; "
        f"lock = QLockFile({str(home / INSTANCE_LOCK_FILE)!r}); lock.setStaleLockTime(0); "
        "print(lock.tryLock(1000), flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert not SingleInstance(home).acquire()          # it runs: we are the second
        holder.kill()                                      # a crash: nothing gets to clean up
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
    again = SingleInstance(home)
    assert again.acquire()
    again.release()


@pytest.mark.skipif(sys.platform != "win32", reason="the installer's named mutex exists on Windows only")
def test_the_running_app_holds_the_named_mutex_the_installer_checks(home):
    import ctypes

    from app.single_instance import SingleInstance

    synchronize = 0x00100000
    instance = SingleInstance(home)
    assert instance.acquire()
    handle = ctypes.windll.kernel32.OpenMutexW(synchronize, False, APP_RUNNING_MUTEX)
    assert handle
    ctypes.windll.kernel32.CloseHandle(handle)
    instance.release()
    assert not ctypes.windll.kernel32.OpenMutexW(synchronize, False, APP_RUNNING_MUTEX)


def test_a_native_crash_leaves_its_stack_in_the_crash_log(home):
    crashed = subprocess.run([sys.executable, "-c", (
        "import faulthandler, pathlib; from app.__main__ import log_native_crashes; "
        f"log_native_crashes(pathlib.Path({str(home)!r})); faulthandler._sigsegv()")],
        cwd=ROOT, env=app_env(home), capture_output=True, text=True)
    assert crashed.returncode != 0
    log = (home / "logs" / "crash.log").read_text(encoding="utf-8")
    assert "Fatal Python error: Segmentation fault" in log and 'File "<string>", line 1' in log
