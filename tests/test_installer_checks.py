"""What install.py and the Linux installer check before they start anything: free disk space for the
environment, room for the venv's deepest path on Windows, and on Linux the system libraries Qt needs for a real
window (with the one apt-get line that adds them, and the terminal chat meanwhile)."""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import types
import venv
from pathlib import Path

import pytest

from fixtures import ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "installer"))
import install  # noqa: E402
import setup_llama_desk as setup  # noqa: E402
import window_libraries  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                                reason="Qt's xcb plugin and ldd are Linux's")


def test_install_py_refuses_a_venv_too_deep_for_windows_paths(tmp_path):
    deep = tmp_path / ("a folder with a long name " * 6).strip() / "llama-desk"
    venv.EnvBuilder(with_pip=False).create(deep / ".venv")
    python = deep / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    with pytest.raises(setup.SetupError, match="too long for Windows") as refused:
        install.check_path_room(python, "win32")
    assert refused.value.code == setup.EXIT_PATH_TOO_LONG
    install.check_path_room(python, "linux")                   # elsewhere there is no such limit


def test_an_install_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    prefix = tmp_path / "程序 app" / "llama-desk"
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setitem(setup.INSTALL_BYTES, "other", free + 10**9)    # a drive with a GB too few
    monkeypatch.setitem(setup.INSTALL_BYTES, "win32", free + 10**9)
    with pytest.raises(setup.SetupError) as refused:
        setup.main(["--prefix", str(prefix), "--wheels", str(tmp_path), "--no-shortcuts"])  # offline: no downloads
    message = str(refused.value)
    assert refused.value.code == setup.EXIT_DISK
    assert "not enough free disk space" in message and str(tmp_path) in message and "GB is free" in message
    assert f"{(free + 10**9) / 1e9:.1f} GB" in message                   # what it needs, in the user's units
    assert not prefix.exists() and not (tmp_path / "程序 app").exists()  # nothing made, no venv half-written


def test_the_downloads_count_on_the_drive_of_the_temp_folder(tmp_path, monkeypatch):
    """pip keeps its downloads in the temp folder until they are installed: on the install's own drive the two add
    up; an offline install (--wheels) downloads nothing."""
    free = shutil.disk_usage(tmp_path).free
    for kind in ("other", "win32"):
        monkeypatch.setitem(setup.INSTALL_BYTES, kind, free // 2)
        monkeypatch.setitem(setup.DOWNLOAD_BYTES, kind, free // 2 + 10**9)
    online = setup.Plan(prefix=tmp_path / "app", source=str(ROOT))
    with pytest.raises(setup.SetupError) as refused:
        setup.check_disk_room(online, temp=tmp_path / "temp")            # the same drive: both do not fit
    assert refused.value.code == setup.EXIT_DISK and str(tmp_path) in str(refused.value)
    setup.check_disk_room(setup.Plan(prefix=tmp_path / "app", source=str(ROOT), wheels=tmp_path), temp=tmp_path)


def test_the_test_run_says_first_when_the_disk_cannot_hold_it(tmp_path, capsys):
    free = min(shutil.disk_usage(ROOT).free, shutil.disk_usage(tmp_path).free)
    assert install.warn_if_the_disk_is_short(tmp_path, need=free + 10**9)
    said = capsys.readouterr().err
    assert "GB of free disk space" in said and str(tmp_path) in said and "TMPDIR" in said
    assert not install.warn_if_the_disk_is_short(tmp_path, need=free // 2) and not capsys.readouterr().err


def test_the_windows_installer_shows_the_space_its_environment_needs():
    script = (ROOT / "installer" / "llama-desk.nsi").read_text(encoding="utf-8")
    section = script.split('Section "llama-desk" SecMain', 1)[1].split("SectionEnd", 1)[0]
    added_kb = [int(line.split()[1]) for line in section.splitlines() if line.strip().startswith("AddSize ")]
    assert added_kb == [setup.INSTALL_BYTES["win32"] // 1024]


@pytest.mark.parametrize("soname, package", [   # Debian's and Ubuntu's package names, as the issue lists them
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"), ("libxcb-image.so.0", "libxcb-image0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libxcb-xinerama.so.0", "libxcb-xinerama0"),
    ("libxcb-xkb.so.1", "libxcb-xkb1"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libEGL.so.1", "libegl1"), ("libdbus-1.so.3", "libdbus-1-3"), ("libglib-2.0.so.0", "libglib2.0-0")])
def test_a_missing_library_is_named_by_its_package(soname, package):
    assert window_libraries.debian_package(soname) == package


@linux_only
def test_a_library_qt_cannot_find_is_found_missing_and_named_in_one_apt_get_line(tmp_path, monkeypatch):
    """Qt's own xcb library, made to need a libxcb-cursor that no system has (the same length, so the file stays
    valid): the dynamic loader, asked by ldd, says it is missing."""
    import PySide6

    qt_lib = Path(PySide6.__file__).parent / "Qt" / "lib"
    original = qt_lib / "libQt6XcbQpa.so.6"
    if not original.is_file():
        pytest.skip(f"this PySide6 has no {original.name}")
    data = original.read_bytes()
    assert data.count(b"libxcb-cursor.so.0\0") == 1
    patched = tmp_path / original.name
    patched.write_bytes(data.replace(b"libxcb-cursor.so.0\0", b"libxcb-cursor.so.7\0"))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(qt_lib))       # Qt's own libraries, as its RPATH would find them
    missing = window_libraries.missing_libraries(patched)
    assert "libxcb-cursor.so.7" in missing
    hint = window_libraries.install_hint(missing)
    assert "\n    sudo apt-get install " in hint and "libxcb-cursor7" in hint.split()
    assert len([line for line in hint.splitlines() if "apt-get" in line]) == 1


@linux_only
def test_what_is_reported_missing_for_the_real_plugin_really_cannot_be_loaded():
    for soname in window_libraries.missing_window_libraries(sys.executable):
        with pytest.raises(OSError):
            ctypes.CDLL(soname)                                # the loader agrees, whatever this machine lacks


@linux_only
def test_install_py_falls_back_to_the_terminal_chat_without_qts_window_libraries(monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":0")
    missing = window_libraries.missing_window_libraries(sys.executable)
    command = install.start_command(Path(sys.executable), types.SimpleNamespace(terminal=False, rest=[]))
    if missing:                                                # e.g. a bare Debian, this project's CI machine
        assert command[1:] == ["run_model.py"]
        assert "sudo apt-get install " + window_libraries.debian_package(missing[0]) in capsys.readouterr().out
    else:
        assert command[1:] == ["-m", "app"]
