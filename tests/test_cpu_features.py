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
