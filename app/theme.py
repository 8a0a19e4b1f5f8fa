"""Light, dark or follow-the-system colours, and a font that has Chinese glyphs.

Fusion style everywhere, so both themes look the same on Windows, macOS and Linux. Fonts: the
platform's CJK UI font first (Microsoft YaHei UI on Windows, PingFang SC on macOS, Noto Sans CJK /
WenQuanYi on Linux) when it is installed, else Qt's default with the CJK fonts as fallbacks.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory, QToolButton, QWidget

CJK_FONTS = {
    "win32": ["Microsoft YaHei UI", "Microsoft YaHei", "SimSun"],
    "darwin": ["PingFang SC", "Hiragino Sans GB", "Heiti SC"],
    "linux": ["Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Droid Sans Fallback"],
}
LATIN_FIRST = {"win32": [], "darwin": [".AppleSystemUIFont"], "linux": ["Noto Sans", "DejaVu Sans"]}

LIGHT = {"window": "#f5f6f8", "base": "#ffffff", "text": "#1d2330", "alt": "#eef0f4", "button": "#eceef2",
         "highlight": "#3b6fd8", "muted": "#6b7385", "user": "#e6eefc", "border": "#d8dce4",
         "notice": "#fdecea", "notice_text": "#7a1c12", "error": "#b3261e"}
DARK = {"window": "#1e2027", "base": "#262a33", "text": "#e6e8ee", "alt": "#2c313b", "button": "#323844",
        "highlight": "#5b8def", "muted": "#9aa3b5", "user": "#2f3a52", "border": "#3a404c",
        "notice": "#4a2522", "notice_text": "#ffd9d4", "error": "#ff8a80"}


def _platform() -> str:
    return "win32" if sys.platform == "win32" else "darwin" if sys.platform == "darwin" else "linux"


def ui_font_families() -> list[str]:
    """Installed families, in the order Qt should try them: CJK UI font first when it covers Latin well."""
    installed = set(QFontDatabase.families())
    platform = _platform()
    cjk = [f for f in CJK_FONTS[platform] if f in installed]
    latin = [f for f in LATIN_FIRST[platform] if f in installed]
    return (cjk + latin) if platform == "win32" else (latin + cjk)


def apply_font(app: QApplication) -> QFont:
    families = ui_font_families()
    font = QFont(app.font())
    if families:
        font.setFamilies(families)
    font.setPointSizeF(max(font.pointSizeF(), 10.0))
    app.setFont(font)
    return font


def system_is_dark() -> bool:
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def colours(theme: str) -> dict:
    dark = theme == "dark" or (theme == "system" and system_is_dark())
    return DARK if dark else LIGHT


def palette_for(c: dict) -> QPalette:
    p = QPalette()
    roles = QPalette.ColorRole
    for role, key in ((roles.Window, "window"), (roles.Base, "base"), (roles.AlternateBase, "alt"),
                      (roles.Button, "button"), (roles.Highlight, "highlight"), (roles.ToolTipBase, "base")):
        p.setColor(role, QColor(c[key]))
    for role in (roles.WindowText, roles.Text, roles.ButtonText, roles.ToolTipText, roles.BrightText):
        p.setColor(role, QColor(c["text"]))
    p.setColor(roles.HighlightedText, QColor("#ffffff"))
    p.setColor(roles.PlaceholderText, QColor(c["muted"]))
    p.setColor(roles.Link, QColor(c["highlight"]))
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(c["muted"]))
    return p


def style_sheet(c: dict) -> str:
    return f"""
    #sidebar {{ background: {c['alt']}; }}
    #sidebar QListWidget {{ background: transparent; border: none; }}
    #sidebar QListWidget::item {{ padding: 6px 6px; border-radius: 6px; }}
    #sidebar QListWidget::item:selected {{ background: {c['highlight']}; color: white; }}
    #messageArea {{ background: {c['base']}; }}
    #userCard {{ background: {c['user']}; border: none; border-radius: 10px; }}
    #answerCard {{ background: {c['base']}; border: 1px solid {c['border']}; border-radius: 10px; }}
    #dimNote {{ color: {c['muted']}; }}
    #contextBanner {{ color: {c['muted']}; border: 1px dashed {c['border']}; border-radius: 6px; padding: 6px; }}
    #chatTitle {{ font-size: 13pt; font-weight: 600; }}
    #notice {{ background: {c['notice']}; color: {c['notice_text']}; }}
    #notice[kind="info"], #notice[kind="wait"], #notice[kind="busy"] {{ background: {c['user']}; color: {c['text']}; }}
    QLabel[problem="true"] {{ color: {c['error']}; }}
    #newChat, #sendButton {{ background: {c['highlight']}; color: white; border: none; border-radius: 6px;
                             padding: 6px 14px; }}
    #newChat:disabled, #sendButton:disabled {{ background: {c['border']}; color: {c['muted']}; }}
    QPlainTextEdit, QLineEdit {{ border: 1px solid {c['border']}; border-radius: 6px; padding: 4px;
                                  background: {c['base']}; }}
    """


def tool_button(parent: QWidget, text: str, tip: str, slot) -> QToolButton:
    """A flat text button that shows its frame only under the pointer: the actions on messages and chats.
    ``slot`` must be a bound method (a lambda holding a widget breaks the exit teardown)."""
    button = QToolButton(parent)
    button.setText(text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    button.clicked.connect(slot)
    return button


def show_problem(label, problem: bool) -> None:
    """Colour a label's text as an error (readable on the light and the dark background) or not."""
    label.setProperty("problem", problem)
    label.style().unpolish(label)
    label.style().polish(label)


def apply_theme(theme: str) -> None:
    app = QApplication.instance()
    if app is None:
        return
    if app.style().name().lower() != "fusion":
        app.setStyle(QStyleFactory.create("Fusion"))
    c = colours(theme)
    app.setPalette(palette_for(c))
    app.setStyleSheet(style_sheet(c))
    app.setProperty("llamaDeskTheme", theme)


def _system_scheme_changed(_scheme) -> None:
    app = QApplication.instance()  # looked up, not captured: a closure holding the app would be released
    if app is not None and app.property("llamaDeskTheme") == "system":  # inside Qt's destructors at exit
        apply_theme("system")


def follow_system_changes(app: QApplication) -> None:
    """Re-apply 'system' when the user switches the desktop between light and dark."""
    hints = QGuiApplication.styleHints()
    if not app.property("llamaDeskFollowsSystem"):
        hints.colorSchemeChanged.connect(_system_scheme_changed)
        app.setProperty("llamaDeskFollowsSystem", True)
