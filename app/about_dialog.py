"""Help > About: the version, this computer (CPU and its features, cores, memory), the keyboard shortcuts,
and where the logs and the data are. The CPU is checked once at start: one without AVX2/FMA still runs
every model, only slower, and the window says so (other local chat apps refuse such CPUs or fail
silently)."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout

from engine.paths import LOGS_FOLDER, PROJECT_ROOT

from .download_panel import human_bytes


def app_version() -> str:
    try:
        return metadata.version("llama-desk")
    except metadata.PackageNotFoundError:  # a source folder that was never installed
        found = re.search(r'^version = "([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
        return found.group(1) if found else "?"


def shortcuts() -> list[tuple[str, str]]:
    return [("Enter", QCoreApplication.translate("AboutDialog", "Send")),
            ("Shift+Enter", QCoreApplication.translate("AboutDialog", "New line")),
            ("Esc", QCoreApplication.translate("AboutDialog", "Stop the answer")),
            ("Ctrl+N", QCoreApplication.translate("AboutDialog", "New chat")),
            ("Ctrl+E", QCoreApplication.translate("AboutDialog", "Export the chat")),
            ("Ctrl+M", QCoreApplication.translate("AboutDialog", "Models")),
            ("Ctrl+,", QCoreApplication.translate("AboutDialog", "Settings")),
            ("Ctrl+Q", QCoreApplication.translate("AboutDialog", "Quit"))]


def slow_cpu_text(report: dict) -> str:
    missing = [label for name, label in (("avx2", "AVX2"), ("fma", "FMA")) if not report["features"][name]]
    return QCoreApplication.translate(
        "AboutDialog", "This CPU has no {0}: llama-desk works, but answers come several times slower than on a CPU "
                       "with them.").format(" / ".join(missing))


class AboutDialog(QDialog):
    def __init__(self, report: dict | None, home: Path, parent=None):
        super().__init__(parent)
        self.home = Path(home)
        self.setWindowTitle(self.tr("About llama-desk"))
        self.text = QLabel(self.describe(report))
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        logs = QPushButton(self.tr("Open the log folder"))
        logs.clicked.connect(self.open_logs)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.addButton(logs, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)

    def describe(self, report: dict | None) -> str:
        from PySide6 import __version__ as pyside
        lines = [f"<h3>llama-desk {app_version()}</h3>",
                 self.tr("Python {0}, Qt {1}, {2}").format(platform.python_version(), pyside, platform.platform())]
        if report is None:
            lines.append(self.tr("The computer is being checked…"))
        else:
            from engine.cpu_info import FEATURES
            marks = ", ".join(f"{label} {'✓' if report['features'][name] else '✗'}" for name, label in FEATURES)
            lines += ["<h4>" + self.tr("This computer") + "</h4>",
                      self.tr("CPU: {0} ({1} cores, {2} threads)").format(report["brand"], report["cores"],
                                                                           report["threads"]),
                      self.tr("Features: {0}").format(marks),
                      self.tr("Memory: {0}").format(human_bytes(report["ram"]))]
            if not report["fast"]:
                lines.append(f"<b>{slow_cpu_text(report)}</b>")
        lines.append("<h4>" + self.tr("Keyboard") + "</h4>")
        lines += [f"{keys}: {what}" for keys, what in shortcuts()]
        lines += ["<h4>" + self.tr("Files") + "</h4>", self.tr("Data: {0}").format(self.home),
                  self.tr("Logs: {0}").format(self.home / LOGS_FOLDER)]
        return "<br>".join(lines)

    def open_logs(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.home / LOGS_FOLDER)))
