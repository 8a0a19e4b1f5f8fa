"""Old CPUs: what the cpu backend needs, and what happens without it (another backend answers).

``NUMBA_CPU_FEATURES`` makes numba compile for exactly the features it names, as on an older CPU,
so these run the real kernels (or the real fall-back) that such a CPU would get.
"""

from __future__ import annotations

CELERON = "+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt"                 # no AVX at all, so no F16C either


def test_without_f16c_the_cpu_backend_steps_aside_instead_of_aborting(monkeypatch):
    from engine.backends.cpu.cpu_executor import CpuExecutor
    from engine.backends.registry import resolve
    from engine.cpu_info import cpu_report

    monkeypatch.setenv("NUMBA_CPU_FEATURES", CELERON)
    monkeypatch.setenv("LLAMA_DESK_NO_GPU", "1")
    report = cpu_report()
    assert report["features"] == {"avx2": False, "fma": False, "f16c": False, "avx512f": False, "avx512vnni": False,
                                  "avxvnni": False} and not report["fast"]
    assert "lacks F16C" in CpuExecutor.unavailable_reason("CPU")
    assert resolve("auto", "auto")[0].name == "mindspore"   # (the kernels would call a missing __extendhfsf2)


def test_the_kernel_variant_follows_the_features_numba_compiles_for():
    """A user's NUMBA_CPU_FEATURES (an older CPU's) picks the kernels that CPU runs, not this host's widest ones:
    AVX-512 code compiled for an AVX-only target makes LLVM abort."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    picked = {}
    for features in (CELERON, CELERON + ",+avx,+f16c", CELERON + ",+avx,+avx2,+fma,+f16c"):
        env = dict(os.environ, NUMBA_CPU_FEATURES=features, PYTHONPATH=str(root))
        env.pop("LLAMA_DESK_CPU_KERNELS", None)
        ask = "from engine.backends.cpu.llvm_ir import ISA, LANES; print(ISA, LANES)"
        done = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, env=env, cwd=root,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        picked[features] = done.stdout.split()
    assert list(picked.values()) == [["generic", "8"], ["generic", "8"], ["avx2", "8"]]
