"""Start the desktop chat: ``python -m app`` (or the ``llama-desk`` launcher, which has no console on Windows).

    python -m app                       # the window; the model loads in the background
    python -m app --screenshot out.png  # load the built-in model, play a short chat, save a PNG, exit
    python -m app --send "Hello"        # once the model is loaded, ask this in a new conversation
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .scripted import SETTINGS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llama-desk", description="llama-desk: a local chat for LLaMA2/LLaMA3")
    parser.add_argument("--screenshot", metavar="PATH", help="play a short chat with the built-in model, save a "
                        "PNG of the window to PATH and exit (works with QT_QPA_PLATFORM=offscreen)")
    parser.add_argument("--page", choices=("chat", "models", "settings"), default="chat",
                        help="with --screenshot: the chat (default), the Models page or Settings")
    parser.add_argument("--send", metavar="TEXT", help="ask TEXT in a new conversation once the model is loaded")
    parser.add_argument("--language", choices=["en", "zh_CN"], help="the UI's language for this run")
    parser.add_argument("--theme", choices=["system", "light", "dark"], help="the colours for this run")
    parser.add_argument("--startup-report", action="store_true",
                        help="print how long the window took to appear (JSON) and exit")
    parser.add_argument("--change-setting", action="append", metavar="NAME", choices=SETTINGS,
                        help="for tests: once the model is loaded, change this setting in Settings, press OK, "
                        "wait for it to take effect and close the window (" + ", ".join(SETTINGS) + ")")
    return parser.parse_args(argv)


def _process_age() -> float:
    """Seconds since this process started (interpreter start-up included)."""
    try:
        import psutil
        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - only a measurement
        return float("nan")


_LIGHT_ENGINE = ("engine.paths", "engine.errors", "engine.generation", "engine.generation.lookup")


def _report_first_paint(window, app) -> None:
    from PySide6.QtCore import QEvent, QObject

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint:
                obj.removeEventFilter(self)
                import psutil
                # engine.paths (and the errors the package's __init__ names), and the lookup modes the settings
                # check against, are standard library only
                engine = sorted(m for m in sys.modules if m.startswith("engine.") and m not in _LIGHT_ENGINE)
                report = {"first_paint_s": round(_process_age(), 3), "rss_bytes": psutil.Process().memory_info().rss,
                          "engine_imported": bool(engine), "numpy_imported": "numpy" in sys.modules,
                          "mindspore_imported": "mindspore" in sys.modules}
                print(json.dumps(report), flush=True)
                app.exit(0)
            return False
    window._first_paint = FirstPaint(window)
    window.installEventFilter(window._first_paint)


def main(argv: list[str] | None = None) -> int:
    if sys.stdout is None or sys.stderr is None:  # the console-less launcher (pythonw) has neither
        import os
        sys.stdout = sys.stdout or open(os.devnull, "w", encoding="utf-8")
        sys.stderr = sys.stderr or open(os.devnull, "w", encoding="utf-8")
    for stream in (sys.stdout, sys.stderr):  # a Windows pipe's code page (cp1252) cannot print every path: 截图.png
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtWidgets import QApplication

    from engine.paths import user_data_dir  # cheap: engine's package imports nothing heavy

    from .application import Application, prepare_qt, setup_logging
    from .preferences import load_preferences

    app = QApplication.instance() or QApplication(sys.argv[:1])
    home = user_data_dir()
    setup_logging(home)
    log_native_crashes(home)
    instance = None
    if not args.screenshot:  # (the screenshot run keeps its own history: it may run beside the app)
        from .single_instance import SingleInstance
        instance = SingleInstance(home)
        if not instance.acquire():
            print(f"llama-desk is already running with the data folder {home}: its window was brought forward.",
                  flush=True)
            return _finish(app, 0, True)
    prefs = load_preferences(home)
    prefs.language = args.language or prefs.language
    prefs.theme = args.theme or prefs.theme
    prepare_qt(app, prefs)
    if args.screenshot:
        from .screenshot import run_screenshot
        code, torn_down = run_screenshot(app, prefs, home, args.screenshot, args.page)
        return _finish(app, code, torn_down)
    scripted = bool(args.send or args.startup_report or args.change_setting)
    application = Application(app, prefs, home, first_run=not scripted)
    if args.startup_report:
        _report_first_paint(application.window, app)
        application.show(load_model=False)
    else:
        application.show()
    if args.send:
        from .scripted import SendOnce
        application.script = SendOnce(application, args.send)
    if args.change_setting:
        from .scripted import ChangeSettingAndClose
        application.script = ChangeSettingAndClose(application, args.change_setting)
    instance.showRequested.connect(application.bring_forward)
    code = app.exec()
    torn_down = application.tear_down()
    instance.release()
    return _finish(app, code, torn_down)


def log_native_crashes(home) -> None:
    """A native crash writes Python's stack to ``<user data>/logs/crash.log`` (pythonw has no console)."""
    import faulthandler

    from engine.paths import CRASH_LOG, LOGS_FOLDER
    global _crash_log
    folder = home / LOGS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    _crash_log = open(folder / CRASH_LOG, "a", encoding="utf-8")  # open for the whole run: faulthandler needs it
    faulthandler.enable(file=_crash_log, all_threads=True)


_crash_log = None


def _finish(app, code: int, torn_down: bool) -> int:
    """Delete the QApplication now, before the interpreter's own clean-up; or leave at once if we cannot.

    ``torn_down`` is False when a worker thread is still busy (MindSpore compiling is not cancellable):
    the history is closed by then, and deleting a running QThread would abort the process.
    """
    if not torn_down:
        import os
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    shutdown = getattr(app, "shutdown", None)   # deletes the QApplication (an older PySide6 may lack it)
    if shutdown is not None:
        shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
