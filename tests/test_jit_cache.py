"""The compiled kernels' cache: a new version of the kernels cleans up after older ones, and never touches a
folder it did not make (a user's NUMBA_CACHE_DIR may hold anything, say a 16-letter ``Documents_backup``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fixtures import ROOT

OLD_VERSION = "0123456789abcdef"


def start_the_cpu_backend(home: Path, numba_cache: Path | None) -> Path:
    """Import the kernels' set-up in a fresh process as a load does, clean up, and return its cache folder."""
    env = {k: v for k, v in os.environ.items() if "NUMBA_CACHE_DIR" not in k}
    env["LLAMA_DESK_HOME"] = str(home)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    code = "from engine.backends.cpu import jit; jit.remove_stale_caches(); print(jit.CACHE_DIR)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", env=env,
                          cwd=ROOT, timeout=120, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def folder(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("x", encoding="utf-8")
    return path


def test_a_users_numba_cache_dir_keeps_everything_not_ours(tmp_path):
    users = tmp_path / "my numba cache 缓存"
    backup = folder(users / "Documents_backup", "thesis.docx")                      # 16 letters, not ours
    hex_named = folder(users / OLD_VERSION, "numba_index.nbi")                      # hex, but no marker
    cache = start_the_cpu_backend(tmp_path / "home", users)
    assert (backup / "thesis.docx").is_file() and (hex_named / "numba_index.nbi").is_file()
    assert cache.parent == users / "llama-desk-kernels" and (cache / "llama-desk-kernels.txt").is_file()


def test_only_older_caches_we_made_are_deleted(tmp_path):
    home = tmp_path / "home"
    ours = home / "jit-cache"
    older = folder(ours / OLD_VERSION, "llama-desk-kernels.txt", "kernel.nbi")
    from_before_the_marker = folder(ours / "fedcba9876543210", "compiled-stored-float16.ok", "kernel.nbc")
    unmarked = folder(ours / "00000000ffffffff", "kernel.nbi")
    not_hex = folder(ours / "my-notes-folder1", "llama-desk-kernels.txt")
    cache = start_the_cpu_backend(home, None)
    assert cache.parent == ours and cache.is_dir()
    assert not older.exists() and not from_before_the_marker.exists()
    assert unmarked.is_dir() and not_hex.is_dir()
    assert start_the_cpu_backend(home, None) == cache and cache.is_dir()   # never its own
