"""Resident memory of this process (now and at peak) and what the machine has free, on Windows and POSIX."""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int:
    try:
        import psutil  # MindSpore depends on it; Windows reports the peak directly
        info = psutil.Process().memory_info()
        peak = getattr(info, "peak_wset", None)
        if peak:
            return int(peak)
    except ImportError:
        pass
    try:
        import resource
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(usage if sys.platform == "darwin" else usage * 1024)
    except ImportError:  # pragma: no cover - Windows without psutil
        return 0


def current_rss_bytes() -> int:
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover
        return 0


def available_bytes() -> int | None:
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return None
