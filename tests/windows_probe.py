"""What only Windows shows, measured inside an installed build (tests/test_windows_wine.py runs this with the
installed python.exe under Wine, and with this machine's Python for comparison). Prints one JSON object.

    python windows_probe.py threads     # the built-in model's numba threading layer and one parallel region's cost
    python windows_probe.py imports     # where mindspore, numba, PySide6 and llama-desk's packages come from
    python windows_probe.py hold PATH SECONDS     # keep PATH open and memory-mapped, as a loaded model does
    python windows_probe.py replace PATH          # try what a writer does to PATH: replace it, move it, delete it
    python windows_probe.py registry KEY          # the values of the registry key HKEY_CURRENT_USER\\KEY
"""

from __future__ import annotations

import importlib
import json
import mmap
import os
import sys
import time
from pathlib import Path


def loaded_dll(name: str) -> str | None:
    """The file a DLL of this name was loaded from in this process (Windows), else None."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetModuleHandleW.restype = wintypes.HMODULE
    kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
    kernel32.GetModuleFileNameW.argtypes = [wintypes.HMODULE, wintypes.LPWSTR, wintypes.DWORD]
    handle = kernel32.GetModuleHandleW(name)
    if not handle:
        return None
    buffer = ctypes.create_unicode_buffer(1024)
    kernel32.GetModuleFileNameW(handle, buffer, len(buffer))
    return buffer.value


def region_cost_us(repeats: int = 3000) -> tuple[float, float]:
    """Microseconds per call of a parallel region doing almost nothing, and of the same loop without threads."""
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def parallel(out):
        for i in numba.prange(out.shape[0]):
            out[i] += 1.0

    @numba.njit
    def serial(out):
        for i in range(out.shape[0]):
            out[i] += 1.0

    out = np.zeros(numba.get_num_threads(), np.float32)
    best = {}
    for kernel in (parallel, serial):
        kernel(out)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                kernel(out)
            times.append((time.perf_counter() - start) / repeats * 1e6)
        best[kernel] = min(times)
    return round(best[parallel], 2), round(best[serial], 2)


def threads() -> dict:
    """The layer the engine's kernels get: the built-in model answers first, then numba says which it chose."""
    import numba
    from engine import GenerationSettings, ModelSource, load_engine

    engine = load_engine(ModelSource(builtin=True))
    engine.chat([{"role": "user", "content": "Hi"}], GenerationSettings(max_new_tokens=4, temperature=0.0))
    parallel, serial = region_cost_us()
    return {"layer": numba.threading_layer(), "threads": numba.get_num_threads(), "region_us": parallel,
            "serial_us": serial, "vcomp140": loaded_dll("vcomp140.dll")}


def imports() -> dict:
    found = {}
    for name in ("engine", "app", "api_server", "checkpoint_download", "run_model", "mindspore", "numba",
                 "PySide6.QtWidgets"):
        start = time.perf_counter()
        module = importlib.import_module(name)
        found[name] = {"file": module.__file__, "seconds": round(time.perf_counter() - start, 2)}
    return found


def hold(path: str, seconds: str) -> dict:
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ):
        print(json.dumps({"holding": path}), flush=True)
        time.sleep(float(seconds))
    return {"released": path}


def replace(path: str) -> dict:
    """What each write an updater or a downloader makes does to a file another process holds."""
    target = Path(path)
    outcome = {}
    for action in ("replace onto it", "move it", "delete it"):
        fresh = target.with_name(target.name + ".new")
        fresh.write_bytes(b"new")
        try:
            if action == "replace onto it":
                os.replace(fresh, target)
            elif action == "move it":
                os.replace(target, target.with_name(target.name + ".moved"))
            else:
                target.unlink()
            outcome[action] = "done"
        except OSError as exc:
            outcome[action] = f"{type(exc).__name__}: [WinError {getattr(exc, 'winerror', None)}] {exc.strerror}"
        fresh.unlink(missing_ok=True)
    return outcome


def registry(key: str) -> dict:
    import winreg
    try:
        handle = winreg.OpenKey(winreg.HKEY_CURRENT_USER, key)
    except OSError:
        return {}
    values, index = {}, 0
    while True:
        try:
            name, value, _ = winreg.EnumValue(handle, index)
        except OSError:
            return values
        values[name] = str(value)
        index += 1


COMMANDS = {"threads": threads, "imports": imports, "hold": hold, "replace": replace, "registry": registry}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:]), ensure_ascii=False), flush=True)
