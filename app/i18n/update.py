"""Regenerate the translations after changing UI strings:  python app/i18n/update.py

1. ``pyside6-lupdate`` collects every ``tr()`` / ``QCoreApplication.translate()`` string of app/*.py
   into ``llama_desk_<lang>.ts`` (keeping the translations already there; new strings come out
   "unfinished", removed ones "vanished").
2. Translate the new strings in the ``.ts`` (Qt Linguist: ``pyside6-linguist``, or any text editor).
3. ``pyside6-lrelease`` compiles the ``.ts`` into the ``.qm`` the app loads. Commit both.

``--no-lupdate`` only compiles. Both tools come with PySide6-Essentials.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE.parent
LANGUAGES = ("zh_CN",)


def tool(name: str) -> str:
    folder = Path(sys.executable).parent
    for candidate in (folder / name, folder / f"{name}.exe", folder / "Scripts" / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install PySide6-Essentials in this Python ({sys.executable}).")
    return found


def main(argv: list[str]) -> int:
    sources = sorted(str(p.relative_to(APP)) for p in APP.glob("*.py"))
    for language in LANGUAGES:
        ts = HERE / f"llama_desk_{language}.ts"
        if "--no-lupdate" not in argv:
            subprocess.run([tool("pyside6-lupdate"), *sources, "-no-obsolete", "-locations", "none",
                            "-ts", str(ts)], check=True, cwd=APP)
        subprocess.run([tool("pyside6-lrelease"), str(ts), "-qm", str(ts.with_suffix(".qm"))], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
