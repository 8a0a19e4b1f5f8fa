"""What this computer offers the cpu backend: the CPU and its vector features, cores, memory.

The JIT kernels are compiled for the features LLVM finds on the host (or those ``NUMBA_CPU_FEATURES``
names, when set: numba then compiles for exactly those, so they are the ones that count). Without
AVX2 and FMA the kernels still run, on SSE, but several times slower; nothing refuses such a CPU.
Cheap to call (~0.3 s, no numba import): the app checks at start, off its UI thread.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# (LLVM's name, what people call it)
FEATURES = (("avx2", "AVX2"), ("fma", "FMA"), ("f16c", "F16C"), ("avx512f", "AVX-512"),
            ("avx512vnni", "AVX-512 VNNI"), ("avxvnni", "AVX-VNNI"))
NEEDED_FOR_SPEED = ("avx2", "fma")


def cpu_brand() -> str:
    """The CPU's marketing name ("AMD Ryzen 7 5800U ..."), as far as the system tells it."""
    try:
        if sys.platform == "win32":
            import winreg
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        if sys.platform.startswith("linux"):
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> dict[str, bool]:
    """LLVM's name of each feature in ``FEATURES`` -> whether the JIT kernels may use it."""
    chosen = os.environ.get("NUMBA_CPU_FEATURES")
    if chosen:
        on = {f.strip()[1:] for f in chosen.split(",") if f.strip().startswith("+")}
        return {name: name in on for name, _label in FEATURES}
    import llvmlite.binding as llvm
    host = llvm.get_host_cpu_features()
    return {name: bool(host.get(name, False)) for name, _label in FEATURES}


def cpu_report() -> dict:
    """Everything the About window and the start-up check show."""
    features = cpu_features()
    try:
        import psutil
        cores, ram = psutil.cpu_count(logical=False), int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with MindSpore
        cores, ram = None, None
    return {"brand": cpu_brand(), "features": features, "cores": cores, "threads": os.cpu_count(), "ram": ram,
            "fast": all(features[name] for name in NEEDED_FOR_SPEED)}
