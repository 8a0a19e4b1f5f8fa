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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llama-desk", description="llama-desk: a local chat for LLaMA2/LLaMA3")
    parser.add_argument("--screenshot", metavar="PATH", help="play a short chat with the built-in model, save a "
                        "PNG of the window to PATH and exit (works with QT_QPA_PLATFORM=offscreen)")
    parser.add_argument("--send", metavar="TEXT", help="ask TEXT in a new conversation once the model is loaded")
    parser.add_argument("--language", choices=["en", "zh_CN"], help="the UI's language for this run")
    parser.add_argument("--theme", choices=["system", "light", "dark"], help="the colours for this run")
    parser.add_argument("--startup-report", action="store_true",
                        help="print how long the window took to appear (JSON) and exit")
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
    prefs = load_preferences(home)
    prefs.language = args.language or prefs.language
    prefs.theme = args.theme or prefs.theme
    prepare_qt(app, prefs)
    if args.screenshot:
        from .screenshot import run_screenshot
        _leave_now(run_screenshot(app, prefs, home, args.screenshot))
    scripted = bool(args.send or args.startup_report)
    application = Application(app, prefs, home, first_run=not scripted)
    if args.startup_report:
        _report_first_paint(application.window, app)
        application.show(load_model=False)
        code = app.exec()
        application.window.close()
        return code
    window = application.show()
    _exit_even_if_busy(application)
    if args.send:
        def send_once(_info) -> None:
            window.modelReady.disconnect(send_once)
            window.session_new()
            window.session.send(args.send)
        window.modelReady.connect(send_once)
    return app.exec()


def _leave_now(code: int) -> None:
    """End the scripted screenshot run without the interpreter's final clean-up.

    Once in ~9 runs of an installed copy, after the PNG was saved, that clean-up's garbage collection
    aborted the process ("Fatal Python error: none_dealloc", a C extension's reference-count bug; not
    found yet). Everything is written by then: there is nothing left for it to do.
    """
    import os
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_even_if_busy(application) -> None:
    """Leave at once when the model's thread cannot stop in time (MindSpore compiling is not cancellable).

    The history is closed by then; a QThread still running at interpreter exit would abort the process.
    """
    import atexit
    import os

    def check() -> None:
        if application.services.engine.thread.isRunning():
            logging.getLogger(__name__).warning("the engine thread was still busy at exit")
            os._exit(0)
    atexit.register(check)


if __name__ == "__main__":
    sys.exit(main())
