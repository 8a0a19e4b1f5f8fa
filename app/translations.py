"""The UI's language: English (the source strings) or Simplified Chinese, through Qt's translators.

Our strings come from ``app/i18n/llama_desk_<lang>.qm`` (compiled from the ``.ts`` next to it by
``python app/i18n/update.py``); Qt's own dialogs and buttons from Qt's ``qtbase_<lang>.qm``.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QLibraryInfo, QLocale, QTranslator
from PySide6.QtWidgets import QApplication

I18N_DIR = Path(__file__).resolve().parent / "i18n"
APP_CATALOG = "llama_desk"
TRANSLATED = ("zh_CN",)

_installed: list[QTranslator] = []
_current = ["en"]


def current() -> str:
    """The language the UI shows now: 'en' or 'zh_CN'."""
    return _current[0]


def system_language() -> str:
    """'zh_CN' for any Chinese system locale (the one translation there is), else 'en'."""
    for name in QLocale.system().uiLanguages() or [QLocale.system().name()]:
        name = name.replace("-", "_")
        if name.startswith("zh"):
            return "zh_CN"
        if name.startswith("en"):
            return "en"
    return "en"


def resolve(language: str) -> str:
    return language or system_language()


def install(app: QApplication, language: str = "") -> str:
    """Switch the application's translators; returns the language now in use ('en' or 'zh_CN')."""
    for translator in _installed:
        app.removeTranslator(translator)
    _installed.clear()
    language = resolve(language)
    _current[0] = "en"
    if language not in TRANSLATED:
        return "en"
    ours = QTranslator(app)
    if not ours.load(str(I18N_DIR / f"{APP_CATALOG}_{language}.qm")):
        return "en"
    catalogs = [ours]
    qt = QTranslator(app)
    if qt.load(f"qtbase_{language}", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)):
        catalogs.append(qt)
    for translator in catalogs:
        app.installTranslator(translator)
        _installed.append(translator)
    _current[0] = language
    return language
