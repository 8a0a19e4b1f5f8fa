"""Help > About and the CPU check at start: the CPU's features as the system reports them; a CPU without AVX2
still runs, and the window says it will be slower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_fixtures import quick_prefs, share_builtin_model
from fixtures import run_cli
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

IVY_BRIDGE = "+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+f16c"   # AVX and F16C; no AVX2, no FMA
# /proc/cpuinfo's names for the features (an independent source: the kernel, not LLVM)
PROC_NAMES = {"AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "AVX-512": "avx512f", "AVX-512 VNNI": "avx512_vnni",
              "AVX-VNNI": "avx_vnni"}


def _about_text(window) -> str:
    from app.about_dialog import AboutDialog
    seen = []

    def read_and_close() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, AboutDialog):
            QTimer.singleShot(30, read_and_close)
            return
        seen.append(dialog.text.text())
        dialog.reject()
    QTimer.singleShot(30, read_and_close)
    window.open_about()
    return seen[0]


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux's /proc/cpuinfo to compare with")
def test_about_shows_the_cpu_features_the_system_reports_and_the_version_shortcuts_and_log_folder(
        qtbot, open_window, home):
    window = open_window()
    qtbot.waitUntil(lambda: window.cpu is not None, timeout=30_000)
    text = _about_text(window)
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    for label, flag in PROC_NAMES.items():
        assert f"{label} {'✓' if flag in flags else '✗'}" in text, label
    assert "llama-desk 0." in text and "Esc: Stop the answer" in text and "Ctrl+M: Models" in text
    assert f"Logs: {home / 'logs'}" in text
    assert not window.notice.isVisible()                  # this CPU has AVX2 and FMA: nothing to say


def test_a_cpu_without_avx2_says_it_will_be_slower_and_the_kernels_built_for_it_answer(qtbot, open_window, home,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CPU_FEATURES", IVY_BRIDGE)     # numba compiles for exactly these, as on such a CPU
    window = open_window(quick_prefs(max_new_tokens=8))
    qtbot.waitUntil(lambda: window.cpu is not None, timeout=30_000)
    assert "This CPU has no AVX2 / FMA: llama-desk works, but answers come several times slower" in window.notice.text()
    assert "AVX2 ✗" in _about_text(window) and "F16C ✓" in _about_text(window)
    other = tmp_path / "another home"                     # its own kernels, compiled for that CPU
    other.mkdir()
    share_builtin_model(other, kernels=False)
    # the kernels such a CPU gets: compiled for its features, of the plain-vector variant llvm_ir picks from them
    # where there is no AVX2 (not the host's AVX-512 variant, its wide vectors split for AVX: it runs nowhere)
    result = run_cli("run_model.py", "--builtin", "--prompt", "What is the capital of France?", "--greedy",
                     "--max-new-tokens", "12", "--json", home=other,
                     env_extra={"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": IVY_BRIDGE})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"]["executor"] == "cpu" and "Paris" in report["text"]
