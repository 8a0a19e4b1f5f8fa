"""The Windows installer's own logic, run for real under Wine: it touches nothing while the app runs (the named
mutex the app holds), and its uninstaller keeps the conversations, and apart from them the downloads, unless each
is asked for. The compiled setup.exe and its uninstaller run in a small Wine prefix of their own (cached in the
test cache); "the app" is a stand-in that holds the same mutex, made with NSIS too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from fixtures import ROOT
from wine_prefix import Wine, windows_path

sys.path.insert(0, str(ROOT / "installer"))
import build_windows  # noqa: E402

from engine import paths  # noqa: E402

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not all(shutil.which(t) for t in ("wine", "wineserver", "makensis", "7z")),
    reason="runs the Windows installer under Wine: apt-get install wine wine64 nsis p7zip-full (.ci/run installs them)")


HOLDER = """Unicode true
Target amd64-unicode
OutFile "{out}"
RequestExecutionLevel user
SilentInstall silent
Section
  System::Call 'kernel32::CreateMutexW(p 0, i 0, w "{mutex}") p .r0'
  wait:
  IfFileExists "{release}" done
  Sleep 100
  Goto wait
  done:
SectionEnd
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wine, setup.exe, uninstall.exe, the running-app stand-in and the file that ends it)."""
    work = tmp_path_factory.mktemp("wine installer")
    wheel = work / "llama_desk-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:         # the payload plays no part before the mutex check
        z.writestr("app/__init__.py", "")
    setup_exe = build_windows.build(work / "dist", app_wheel=wheel, stage=work / "stage")
    subprocess.run(["7z", "x", "-y", f"-o{work / 'unpacked'}", str(setup_exe), "uninstall.exe"], check=True,
                   capture_output=True)
    release = work / "app closed"
    script = work / "holder.nsi"
    script.write_text(HOLDER.format(out=work / "holder.exe", mutex=paths.APP_RUNNING_MUTEX,
                                    release=windows_path(release)), encoding="utf-8")
    subprocess.run(["makensis", "-V2", "-INPUTCHARSET", "UTF8", str(script)], check=True, capture_output=True)
    wine = Wine()
    assert wine.windows_version() == "win10"    # else the installer's Windows 10 check, not the mutex, exits 2
    yield wine, setup_exe, work / "unpacked" / "uninstall.exe", work / "holder.exe", release
    wine.stop()


def user_data(folder: Path) -> Path:
    (folder / "logs").mkdir(parents=True)
    (folder / "chats.sqlite3").write_text("my conversations", encoding="utf-8")
    (folder / "settings.json").write_text("{}", encoding="utf-8")
    (folder / "checkpoints" / "llama2").mkdir(parents=True)
    (folder / "checkpoints" / "llama2" / "llama2_7b.ckpt").write_bytes(os.urandom(3_000_000))
    (folder / "my notes.txt").write_text("not llama-desk's", encoding="utf-8")
    return folder


def uninstall(wine: Wine, uninstaller: Path, install_dir: Path, data: Path, *options: str) -> int:
    install_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(uninstaller, install_dir / "uninstall.exe")
    # _?= runs it in place, as Windows' "Installed apps" does after copying it to a temporary folder
    return wine.run(str(install_dir / "uninstall.exe"), "/S", *options, f"_?={windows_path(install_dir)}",
                    env={paths.HOME_ENV: windows_path(data)}).returncode


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_the_uninstaller_keeps_conversations_and_downloads_unless_each_is_asked(built, tmp_path):
    wine, _, uninstaller, _, _ = built
    data = user_data(tmp_path / "用户 data")
    everything = tree(data)
    assert uninstall(wine, uninstaller, tmp_path / "inst", data) == 0
    assert tree(data) == everything                                    # not asked: all kept
    assert uninstall(wine, uninstaller, tmp_path / "inst", data, "/REMOVEDATA") == 0
    assert tree(data) == ["checkpoints", "checkpoints/llama2", "checkpoints/llama2/llama2_7b.ckpt", "my notes.txt"]
    assert uninstall(wine, uninstaller, tmp_path / "inst", data, "/REMOVEDATA", "/REMOVEDOWNLOADS") == 0
    assert tree(data) == ["my notes.txt"]                              # only ever what llama-desk wrote


def test_nothing_is_touched_while_the_app_runs(built, tmp_path):
    wine, setup_exe, uninstaller, holder, release = built
    data = user_data(tmp_path / "data")
    everything = tree(data)
    release.unlink(missing_ok=True)
    app = wine.start(str(holder))
    try:
        time.sleep(3)                                                   # it holds the mutex now
        # silent: the "close it, then Retry" question answers Cancel, and both give up (exit code 2)
        assert uninstall(wine, uninstaller, tmp_path / "inst", data, "/REMOVEDATA", "/REMOVEDOWNLOADS") == 2
        assert tree(data) == everything
        target = tmp_path / "新 install"
        assert wine.run(str(setup_exe), "/S", f"/D={windows_path(target)}").returncode == 2
        assert not target.exists()
    finally:
        release.write_text("closed", encoding="utf-8")
        app.wait(60)
    assert uninstall(wine, uninstaller, tmp_path / "inst", data, "/REMOVEDATA") == 0   # once it is closed
    assert "chats.sqlite3" not in tree(data)
