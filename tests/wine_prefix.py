"""A small Wine prefix of our own, for running Windows programs in tests: the compiled installer, and the
Windows Python the Windows stage (tests/test_windows_wine.py) unpacks, where Windows' own rules matter (a file
held open by another program cannot be replaced). Cached in the test cache; its wineserver is ended after use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import assets

PREFIX = "wine-installer-prefix-win10"


def windows_path(path: Path) -> str:
    """A Linux path as a Windows program under Wine sees it (drive Z: is /)."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


def windows_python() -> Path | None:
    """python.exe of the embeddable runtime the Windows stage unpacks and verifies (None until it has run)."""
    found = assets.cache_dir() / "wine" / "runtime" / "python.exe"
    return found if found.is_file() else None


class Wine:
    def __init__(self, prefix: Path | None = None):
        prefix = prefix or assets.cache_dir() / PREFIX
        self.env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all",
                    "WINEDLLOVERRIDES": "mscoree,mshtml=;winemenubuilder.exe=d"}
        if not (prefix / "system.reg").exists():
            subprocess.run(["wineboot", "-i"], env=self.env, capture_output=True, timeout=300, check=True)
            # a new prefix says Windows 7, where the installer's own Windows 10 check exits 2 before anything else
            subprocess.run(["wine", "reg", "add", r"HKCU\Software\Wine", "/v", "Version", "/t", "REG_SZ", "/d",
                            "win10", "/f"], env=self.env, capture_output=True, timeout=120, check=True)

    def windows_version(self) -> str:
        """The Windows version this prefix reports (winecfg's name: win7, win10, ...)."""
        done = self.run("reg", "query", r"HKCU\Software\Wine", "/v", "Version")
        words = done.stdout.decode("utf-8", "replace").split()
        return words[-1] if "Version" in words else "win7"

    def run(self, *command: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["wine", *command], env={**self.env, **(env or {})}, capture_output=True,
                              timeout=timeout)

    def start(self, *command: str) -> subprocess.Popen:
        return subprocess.Popen(["wine", *command], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """End this prefix's wineserver (and only its programs)."""
        subprocess.run(["wineserver", "-k"], env=self.env, capture_output=True, timeout=60)
