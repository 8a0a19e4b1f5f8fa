"""Can MindSpore run a kernel on a GPU here? Answered once, with a reason a user understands.

MindSpore's Windows wheel is CPU-only, and its Linux wheel carries GPU plugins
built for CUDA 11.1/11.6 only. Asking MindSpore directly can print pages of
C++ context or abort the process, so we first look for the obvious (platform,
NVIDIA driver) and only then run one tiny kernel in a child process, whose
failure we turn into one sentence. The answer is cached for the process.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import subprocess
import sys
from pathlib import Path

_PROBE = ("import mindspore as ms, numpy as np\n"
          "ms.set_device('GPU')\n"
          "print(float((ms.Tensor(np.ones(4, np.float32)) * 2).sum().asnumpy()))\n")


def _has_nvidia_driver() -> bool:
    if Path("/proc/driver/nvidia/version").exists():
        return True
    return bool(ctypes.util.find_library("cuda"))


def _explain(output: str) -> str:
    text = output.lower()
    if "libcudart" in text or "cudart" in text or "libcublas" in text or "libcudnn" in text:
        return ("MindSpore 2.10's GPU plugin needs the CUDA 11.1 or 11.6 runtime (and cuDNN 8), which is not "
                "installed or is a newer major version. Running on the CPU instead.")
    if "device_target" in text or "not support" in text or "unsupported" in text:
        return "this MindSpore build has no GPU support. Running on the CPU instead."
    last = [line.strip() for line in output.splitlines() if line.strip()]
    return f"MindSpore could not run a kernel on the GPU ({(last[-1] if last else 'no output')[:160]})."


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """None when MindSpore can run a kernel on the GPU; otherwise why not."""
    if os.environ.get("LLAMA_DESK_NO_GPU"):
        return "GPU use is switched off (LLAMA_DESK_NO_GPU is set)."
    if sys.platform == "win32":
        return "MindSpore's Windows package supports the CPU only."
    if sys.platform == "darwin":
        return "MindSpore supports no GPU on macOS."
    if not _has_nvidia_driver():
        return "no NVIDIA GPU driver was found."
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, GLOG_v="3"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"probing the GPU failed ({exc})."
    if done.returncode == 0 and done.stdout.strip().endswith("8.0"):
        return None
    return _explain(done.stdout + done.stderr)
