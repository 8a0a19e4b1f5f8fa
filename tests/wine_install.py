"""llama-desk's Windows installer, built from this checkout and run under Wine as a user runs it (silently).

The installer is the online build carrying the embeddable runtime (``build_windows.py --python-zip``), so it
unpacks Python itself; pip then takes the cached win_amd64 wheels through its own configuration (PIP_NO_INDEX,
PIP_FIND_LINKS), as a user's pip.ini would give it a mirror. Everything after the unpacking is the NSIS script's own
doing: its PowerShell step (through the stand-in), its setup command line, shortcuts, uninstaller and registry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import wine_env
from engine import paths

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))
import build_windows  # noqa: E402

APP = "llama-desk"
LOCAL = rf"C:\users\{wine_env.WINDOWS_USER}\AppData\Local"
ROAMING = rf"C:\users\{wine_env.WINDOWS_USER}\AppData\Roaming"
UNINSTALL_KEY = rf"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\{APP}"
INSTALL_TIMEOUT_S = 1200
PROBE = Path(__file__).resolve().parent / "windows_probe.py"  # runs inside the Windows Python


@dataclass
class WindowsInstall:
    """Where the installer puts things, on the Windows side (C:\\...) and on this machine's disk."""

    wine: wine_env.WineSession
    installer: Path
    wheels: Path
    first_install: tuple[subprocess.CompletedProcess, float] | None = None  # the fixture's fresh install, timed

    folder: ClassVar[str] = rf"{LOCAL}\Programs\{APP}"  # NSIS: $LOCALAPPDATA\Programs\llama-desk
    data: ClassVar[str] = rf"{LOCAL}\{paths.APP_FOLDER}"  # engine.paths.user_data_dir() on Windows
    python: ClassVar[str] = rf"{folder}\python\python.exe"
    pythonw: ClassVar[str] = rf"{folder}\python\pythonw.exe"
    start_menu: ClassVar[str] = rf"{ROAMING}\Microsoft\Windows\Start Menu\Programs\{APP}.lnk"
    desktop: ClassVar[str] = rf"C:\users\{wine_env.WINDOWS_USER}\Desktop\{APP}.lnk"

    def host(self, windows: str) -> Path:
        """The file behind a C:\\ path of the prefix."""
        assert windows[:3].upper() == "C:\\", windows
        return self.wine.prefix / "drive_c" / Path(*windows[3:].split("\\"))

    def clean(self) -> None:
        """No earlier run's program, data or registry entries: the next install is a first one."""
        for windows in (self.folder, self.data, self.start_menu, self.desktop):
            path = self.host(windows)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for key in (UNINSTALL_KEY, rf"HKCU\Software\{APP}"):
            self.wine.run(["reg", "delete", key, "/f"], timeout=120)

    def run_installer(self) -> tuple[subprocess.CompletedProcess, float]:
        """setup.exe /S, as a silent install runs (exit code 0, or 2 when it aborted); and its seconds."""
        pip_config = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wine_env.windows_path(self.wheels)}
        started = time.monotonic()
        done = self.wine.run([self.installer, "/S"], env=pip_config, timeout=INSTALL_TIMEOUT_S)
        return done, time.monotonic() - started

    def python_run(self, args: list[str], *, gui: bool = False, env: dict[str, str] | None = None,
                   timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
        """The installed Python, started in the install folder (the shortcuts' working folder)."""
        return self.wine.run([self.pythonw if gui else self.python, *args], cwd=self.host(self.folder), env=env,
                             timeout=timeout, input=input)

    def python_popen(self, args: list[str]) -> subprocess.Popen:
        return self.wine.popen([self.python, *args], cwd=self.host(self.folder))

    def registry(self, key: str) -> dict[str, str]:
        """The values of an HKCU key, {} if there is none (read with winreg: reg.exe prints in a legacy code page)."""
        runtime = wine_env.cache_dir() / "runtime" / "python.exe"
        done = self.wine.run([runtime, "-X", "utf8", wine_env.windows_path(PROBE), "registry",
                              key.removeprefix("HKCU\\")], timeout=120)
        return json.loads(done.stdout)

    def uninstall(self, *options: str) -> subprocess.CompletedProcess:
        """uninstall.exe /S, run in place (``_?=``: it waits, rather than copying itself away and returning)."""
        return self.wine.run([rf"{self.folder}\uninstall.exe", "/S", *options, f"_?={self.folder}"], timeout=600)


def build_installer(out: Path, python_zip: Path) -> Path:
    """The online installer with the runtime inside, from this checkout (app wheel and setup script as they are)."""
    return build_windows.build(out / "dist", python_zip=python_zip, app_wheel=build_windows.build_app_wheel(out / "wheel"),
                               stage=out / "stage")
