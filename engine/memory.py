"""Peak resident memory of this process, on Windows and POSIX alike."""

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


def estimate_model_bytes(cfg, compute_dtype: str, max_seq_len: int) -> int:
    """Weights in the compute dtype + float32 KV cache + MindSpore and graph overhead."""
    from .weights import expected_shapes

    params = sum(int(_prod(shape)) for shape in expected_shapes(cfg).values())
    itemsize = 4 if compute_dtype == "float32" else 2
    kv_cache = cfg.num_layers * 2 * cfg.kv_heads * cfg.head_dim * (max_seq_len + 64) * 4
    return params * itemsize + kv_cache + (1 << 30)


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
