"""The Linux twin of the Windows installer, end to end: installer/install.sh from a folder whose path has spaces
and Chinese, into a fresh virtual environment, its desktop entry, the installed app started as the menu
would start it (offscreen, with --screenshot), then the uninstaller.

It installs from pip's index (PyPI or the configured mirror; pip's cache is reused), so it needs the
network and takes a few minutes; it is skipped offline (LLAMA_DESK_TEST_OFFLINE=1) and off Linux.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_installer import desktop_exec_argv, desktop_keys, pypi_reachable

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_S = 1200
APP_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer (install.sh) runs on Linux"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="install.sh needs bash"),
]


def copy_source(dest: Path) -> None:
    """The project's files as a user would have them (git's tracked files; no .venv, caches or build output)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True)
    names = [n for n in listed.stdout.decode("utf-8").split("\0") if n] if listed.returncode == 0 else []
    if not names:  # not a git checkout
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "dist",
                                                                   "__pycache__", "*.egg-info"))
        return
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def clean_env(**extra: str) -> dict[str, str]:
    """This test process's environment without what points at the checkout or its venv."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "LLAMA_DESK_HOME", "LLAMA_DESK_MODELS_DIR",
            "LLAMA_DESK_BUILTIN_GGUF", "XDG_DATA_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONIOENCODING": "utf-8", **extra}


def test_install_sh_installs_a_working_app_with_a_menu_entry_and_uninstalls_it(tmp_path):
    if not pypi_reachable():
        pytest.skip("installs from PyPI, which is not reachable (or LLAMA_DESK_TEST_OFFLINE=1)")
    top = tmp_path / "llama desk 测试"
    source, prefix, xdg, home = top / "源码 src", top / "程序 app", top / "xdg 数据", top / "home 家"
    source.mkdir(parents=True)
    copy_source(source)
    env = clean_env(XDG_DATA_HOME=str(xdg), LLAMA_DESK_HOME=str(home), PYTHON=sys.executable)

    started = time.monotonic()
    done = subprocess.run(["bash", str(source / "installer" / "install.sh"), "--prefix", str(prefix)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=INSTALL_TIMEOUT_S)
    install_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"install.sh took {install_s:.0f} s")

    # the menu entry, read as a desktop environment reads it
    entry = xdg / "applications" / "llama-desk.desktop"
    keys = desktop_keys(entry.read_text(encoding="utf-8"))
    command = desktop_exec_argv(keys["Exec"])
    assert command == [str(prefix / "venv" / "bin" / "llama-desk")]
    assert png_size(Path(keys["Icon"])) == (256, 256)
    if shutil.which("desktop-file-validate"):
        validated = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert validated.returncode == 0 and not validated.stdout.strip(), validated.stdout

    # a clean environment of its own: the app, the engine and the built-in model come from it, not the checkout
    venv_python = prefix / "venv" / "bin" / "python"
    assert "include-system-site-packages = false" in (prefix / "venv" / "pyvenv.cfg").read_text()
    probe = ("import app, engine, mindspore, PySide6, numba; "
             "from engine.builtin_model import find_builtin_gguf; from engine.paths import default_model_files; "
             "files = default_model_files(2); "
             "print(app.__file__, find_builtin_gguf(), files['checkpoint'], files['config'].is_file(), sep='\\n')")
    found = subprocess.run([str(venv_python), "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                           encoding="utf-8", timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    app_file, gguf, checkpoint, config_found = found.stdout.strip().splitlines()
    site = prefix / "venv" / "lib"
    assert Path(app_file).is_relative_to(site) and Path(gguf).is_relative_to(site)
    assert Path(checkpoint) == home / "checkpoints" / "llama2" / "llama2_7b.ckpt"  # downloads outlive the venv
    assert config_found == "True"

    # started as the menu starts it: the built-in model loads, a short chat plays, a picture is saved
    shot = tmp_path / "截图 shot.png"
    started = time.monotonic()
    ran = subprocess.run(command + ["--screenshot", str(shot)], env={**env, "QT_QPA_PLATFORM": "offscreen"},
                         cwd=keys["Path"], capture_output=True, text=True, encoding="utf-8", timeout=APP_TIMEOUT_S)
    print(f"the installed app's scripted chat took {time.monotonic() - started:.0f} s")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert png_size(shot) == (1180, 820)
    assert (home / "models").is_dir()  # the built-in model was converted into the user-data folder

    # the uninstaller the install printed: the program and its menu entry go, the user's data stays
    uninstall = next(line for line in done.stdout.splitlines() if line.startswith("Uninstall: "))
    removed = subprocess.run([sys.executable, str(prefix / "setup_llama_desk.py"), "--uninstall"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert "setup_llama_desk.py\" --uninstall" in uninstall
    assert not prefix.exists() and not entry.exists()
    assert (home / "models").is_dir() and (home / "logs").is_dir()
