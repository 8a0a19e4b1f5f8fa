"""Windows' file rules, under Wine with the Windows stage's Python: a file another program holds open cannot be
replaced (os.replace fails at once), so every small record llama-desk rewrites (the downloader's checksums, the
CRC record, the models-folder choice) goes through engine/atomic_write.py, which waits the holder out."""

from __future__ import annotations

import shutil
import sys

import pytest

from fixtures import ROOT
from wine_prefix import Wine, windows_path, windows_python

PROBE = r"""
import importlib.util, os, sys, threading, time
spec = importlib.util.spec_from_file_location("atomic_write", sys.argv[1])   # standard library only: no packages
atomic_write = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic_write)
target = os.path.join(sys.argv[2], ".verified.json")
with open(target, "w", encoding="utf-8") as f:
    f.write("old")
held = open(target, encoding="utf-8")              # another program reading it (a backup, an antivirus, a copy)
with open(target + ".new", "w", encoding="utf-8") as f:
    f.write("plain")
try:
    os.replace(target + ".new", target)
    print("plain: replaced")
except PermissionError as exc:
    print(f"plain: refused {exc.winerror}")
threading.Timer(0.4, held.close).start()           # the other program lets go a moment later
started = time.monotonic()
atomic_write.write_text_atomically(target, "新的 record")
print(f"retried: {open(target, encoding='utf-8').read()} after {time.monotonic() - started:.1f} s")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("wine") is None,
                    reason="needs Wine (apt-get install wine wine64; .ci/run installs it)")
def test_a_record_held_open_by_another_program_is_replaced_once_it_lets_go(tmp_path):
    python = windows_python()
    if python is None:
        pytest.skip("the Windows stage (tests/test_windows_wine.py) has not unpacked its Windows Python yet")
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    wine = Wine()
    try:
        done = wine.run(str(python), windows_path(tmp_path / "probe.py"),
                        windows_path(ROOT / "engine" / "atomic_write.py"), windows_path(tmp_path),
                        env={"PYTHONIOENCODING": "utf-8"})
    finally:
        wine.stop()
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    assert "plain: refused 5" in out                  # what a bare os.replace meets on Windows
    assert "retried: 新的 record after 0." in out       # waited, then written whole
