"""What install.py and the Linux installer check before they start anything: room for the venv's deepest path
on Windows, and on Linux the system libraries Qt needs for a real window (with the one apt-get line that adds
them, and the terminal chat meanwhile)."""

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
