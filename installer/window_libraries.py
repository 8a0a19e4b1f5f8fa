"""Linux: are the system libraries there that Qt needs for a real window (its xcb platform plugin)?

A bare Debian/Ubuntu lacks some of them (``libxcb-cursor0``, ``libxcb-icccm4``, ``libxcb-keysyms1``...), and
``python -m app`` then aborts with Qt's "could not load the Qt platform plugin xcb". The dynamic loader itself
(``ldd`` on the plugin PySide6 carries) says which are missing, before any window is tried; the one
``apt-get install`` line that adds them follows Debian's package naming. Standard library only: install.py
and setup_llama_desk.py run it on a fresh Python.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

# The installed interpreter says where its PySide6 keeps the xcb plugin (it, not this Python, runs the app).
PLUGIN_QUERY = ("import pathlib, PySide6; p = pathlib.Path(PySide6.__file__).parent; "
                "print(next(iter(sorted(p.glob('**/platforms/libqxcb.so'))), ''))")
# Where Debian's rule (the library name, then its major version, "-" between two digits) does not give the package
PACKAGES = {"libglib-2.0": "libglib2.0-0", "libgthread-2.0": "libglib2.0-0", "libgobject-2.0": "libglib2.0-0"}


def missing_window_libraries(python: str | Path) -> list[str]:
    """Sonames (``libxcb-icccm.so.4``...) that Qt's xcb plugin for ``python`` cannot load; [] off Linux, or when
    there is nothing to check (no PySide6 yet, no ``ldd``)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        found = subprocess.run([str(python), "-I", "-c", PLUGIN_QUERY], capture_output=True, text=True,
                               encoding="utf-8", timeout=120).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return missing_libraries(Path(found)) if found else []


def missing_libraries(elf: Path) -> list[str]:
    """What the dynamic loader cannot find for ``elf`` and everything it needs, in ``ldd``'s order."""
    if shutil.which("ldd") is None or not Path(elf).is_file():
        return []
    done = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, encoding="utf-8", errors="replace")
    found = re.findall(r"^\s*(\S+) => not found", done.stdout, re.M)
    return list(dict.fromkeys(found))


def debian_package(soname: str) -> str:
    """``libxcb-icccm.so.4`` -> ``libxcb-icccm4``; ``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0``."""
    name, _, version = soname.partition(".so")
    version = version.lstrip(".").split(".")[0]
    if name in PACKAGES:
        return PACKAGES[name]
    joiner = "-" if name[-1:].isdigit() and version else ""
    return f"{name}{joiner}{version}".lower()


def install_hint(missing: list[str]) -> str:
    """One message: what is missing, the one command that adds it, and that the terminal chat works meanwhile."""
    packages = " ".join(dict.fromkeys(debian_package(m) for m in missing))
    return (f"The desktop app cannot open a window: this system lacks libraries Qt needs ({', '.join(missing)}). "
            f"Install them with:\n    sudo apt-get install {packages}\n"
            "Until then the terminal chat works (python run_model.py).")
