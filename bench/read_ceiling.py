"""How close our 2-byte decode kernel comes to what this machine can read at all, beside a llama.cpp-style loop.

    python bench/read_ceiling.py                  # 1 GiB, 2 threads, 20 rounds in turns (needs gcc; Linux)
    python bench/read_ceiling.py --rounds 40 --threads 2
    python bench/read_ceiling.py --small-pages    # 4 KB pages, as on Windows (no 2 MB pages without a privilege)

Why: ``speed.py``'s yardstick is numpy's float32 GEMV, which is not the ceiling
(llama.cpp's decode has read 1.2x of it). Here, over the same 1 GiB, in turns
round after round (this VM's bandwidth drifts by a third within minutes):

* ``read``: every 64-byte line loaded once and added, in C (``read_ceiling.c``):
  what 2 cores can stream; nothing a GEMV does can beat it by much.
* ``c_f16``: llama.cpp's F16 dot product written the same way in C (one row at
  a time, activations in fp16, four accumulators), rows split in halves.
* ``ours_rows`` / ``ours_packed`` (fp16) and ``ours_packed_bf16``: our decode
  kernel (``matvec``) on the matrix as stored and packed (``dot_wide.pack_rows``).
* ``numpy_f32``: the float32 GEMV ``speed.py`` reports (4 bytes a weight).

Printed: GB/s of weights read (best and median of the rounds) and each one's
median per-round ratio to ``read``. The C code is built with gcc into a
temporary folder (``-march=native``); without gcc only our kernels and numpy run.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

K = 2048          # row length (a 2K-hidden model's matrices)


def build_c(folder: Path):
    """The compiled read_ceiling.c, or None (no gcc, or it failed: why is printed)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        print("gcc not found: the C read ceiling and llama.cpp-style loop are skipped", file=sys.stderr)
        return None
    out = folder / "read_ceiling.so"
    done = subprocess.run([gcc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", str(HERE / "read_ceiling.c"),
                           "-o", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"gcc failed: {done.stderr.strip()[:500]}", file=sys.stderr)
        return None
    lib = ctypes.CDLL(str(out))
    lib.read_sum.restype = ctypes.c_float
    return lib


def measurements(total_bytes: int, threads: int, lib) -> dict:
    """name -> (function that reads ``total_bytes`` of weights once, bytes it reads)."""
    from engine.backends.cpu import jit
    from engine.backends.cpu.dot_wide import pack_rows
    from engine.backends.cpu.matvec import matvec

    jit.use_threads(threads)
    rng = np.random.default_rng(0)
    rows = max(64, total_bytes // (2 * K) // 64 * 64)     # whole tiles
    w32 = (rng.standard_normal((rows, K), dtype=np.float32) * np.float32(0.02))
    fp16 = w32.astype(np.float16).view(np.uint16)
    bf16 = (w32.view(np.uint32) >> 16).astype(np.uint16).view(np.int16)
    packed16, packed_bf = pack_rows(fp16), pack_rows(bf16)
    del bf16
    f32 = w32[: rows // 2]                         # the same bytes as float32 weights
    x = rng.standard_normal(K, dtype=np.float32)
    x16 = x.astype(np.float16).view(np.uint16)
    out = np.zeros(rows, np.float32)
    scales = np.zeros((0, 0), np.float32)
    act = (np.zeros((1, K), np.int8), np.zeros((1, K // 32), np.float32), np.zeros((1, K // 32), np.int32))
    nbytes = rows * K * 2
    runs = {
        "ours_rows": (lambda: matvec(fp16, scales, x, act, out), nbytes),
        "ours_packed": (lambda: matvec(packed16, scales, x, act, out), nbytes),
        "ours_packed_bf16": (lambda: matvec(packed_bf, scales, x, act, out), nbytes),
        "numpy_f32": (lambda: f32 @ x, f32.nbytes),
    }
    if lib is not None:
        ptr = ctypes.c_void_p
        runs["read"] = (lambda: lib.read_sum(ctypes.c_long(nbytes), ptr(fp16.ctypes.data), threads), nbytes)
        runs["c_f16"] = (lambda: lib.gemv_f16(ctypes.c_long(rows), ctypes.c_long(K), ptr(fp16.ctypes.data),
                                              ptr(x16.ctypes.data), ptr(out.ctypes.data), threads), nbytes)
    check = np.zeros(rows, np.float32)
    matvec(packed16, scales, x, act, check)
    reference = fp16[:64].view(np.float16).astype(np.float32) @ x
    assert np.allclose(check[:64], reference, rtol=1e-3, atol=1e-3), "the packed kernel gave wrong sums"
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=1.0, help="bytes of weights read per call (GiB; default 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--small-pages", action="store_true",
                   help="arrays in 4 KB pages (numpy asks Linux for 2 MB ones): what Windows and macOS give")
    args = p.parse_args()
    if args.small_pages:
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray
        multiarray._set_madvise_hugepage(False)
    with tempfile.TemporaryDirectory() as folder:
        runs = measurements(int(args.gib * (1 << 30)), args.threads, build_c(Path(folder)))
        for run, _ in runs.values():
            run()                                   # compiled, pages touched
        times = {name: [] for name in runs}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                start = time.perf_counter()
                runs[name][0]()
                times[name].append(time.perf_counter() - start)
    base = "read" if "read" in times else "numpy_f32"
    pages = "4 KB pages" if args.small_pages else "2 MB pages where Linux gives them"
    print(f"{args.gib:g} GiB of weights ({pages}), {args.threads} threads, {args.rounds} rounds in turns")
    for name, t in times.items():
        size = runs[name][1]
        ratio = np.median([size / a / (runs[base][1] / b) for a, b in zip(t, times[base])])
        print(f"  {name:17} {size / min(t) / 1e9:6.1f} GB/s best, {size / np.median(t) / 1e9:6.1f} median; "
              f"{ratio:.3f}x {base} (median of the rounds' ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
