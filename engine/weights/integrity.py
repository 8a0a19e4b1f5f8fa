"""Is the checkpoint damaged? A CRC check when the file carries one, and a scan for NaN/Inf.

A few flipped bytes inside tensor data parse fine and load silently; the model
then prints garbage. ``save_checkpoint(crc_check=True)`` ends a ``.ckpt`` with
a CRC32 of everything before it: we verify it the first time we see a file and
remember (path, size, mtime) in the user-data folder, so later starts do not
re-read 16 GB. ``scan_nonfinite`` reads every tensor and names those holding
NaN or Inf (the front ends' "verify" action).
"""

from __future__ import annotations

import json
import threading
import zlib
from typing import Callable

import numpy as np

from engine.errors import Cancelled, CheckpointError
from engine.paths import verified_record

from .tensor_source import TensorSource

ProgressFn = Callable[[int, int], None]
_BLOCK = 1 << 24


def _key(source: TensorSource) -> str:
    stat = source.path.stat()
    return f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _load_record() -> dict:
    try:
        return json.loads(verified_record().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _remember(key: str) -> None:
    record = _load_record()
    record[key] = "crc-ok"
    path = verified_record()
    tmp = path.with_name(path.name + f".{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=0), encoding="utf-8")
    tmp.replace(path)


def verify_crc_once(source: TensorSource, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None) -> bool:
    """Check a ``.ckpt``'s CRC trailer, once per file version. Returns whether a check was made."""
    crc = getattr(source, "crc", None)
    if crc is None:
        return False
    key = _key(source)
    if _load_record().get(key) == "crc-ok":
        return False
    stored, covered = crc
    mapped = source.files[0]
    value = 0
    for begin in range(0, covered, _BLOCK):
        if cancel is not None and cancel.is_set():
            raise Cancelled("Loading was cancelled.")
        end = min(begin + _BLOCK, covered)
        value = zlib.crc32(mapped.buffer[begin:end], value)
        mapped.release_range(begin, end - begin)
        if progress:
            progress(end, covered)
    if value != stored:
        path = source.path
        source.close()
        raise CheckpointError(
            f"{path} is damaged: its CRC32 check fails (stored {stored:#010x}, computed {value:#010x}), so some "
            "bytes changed after it was saved. Download it again.", path=path, subject="weights")
    _remember(key)
    return True


def scan_nonfinite(source: TensorSource, progress: ProgressFn | None = None,
                   cancel: threading.Event | None = None) -> list[str]:
    """Names of floating-point tensors that hold NaN or Inf, reading each tensor once."""
    names = [n for n, info in source.tensors.items() if info.dtype in ("float32", "float16", "bfloat16")]
    total = sum(source.tensors[n].nbytes for n in names)
    done, bad = 0, []
    for name in names:
        info = source.tensors[name]
        finite = True
        for part in source.chunk_arrays(name):
            for begin in range(0, part.size, _BLOCK):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Verification was cancelled.")
                block = part[begin:begin + _BLOCK]
                if info.dtype == "bfloat16":  # exponent all ones = Inf/NaN
                    finite = finite and not np.any((block & 0x7F80) == 0x7F80)
                else:
                    finite = finite and bool(np.isfinite(block).all())
        source.release(name)
        if not finite:
            bad.append(name)
        done += info.nbytes
        if progress:
            progress(done, total)
    return bad


def sha256_file(path, progress: ProgressFn | None = None) -> str:
    """Hex SHA-256 of a file, read in 16 MiB blocks."""
    import hashlib
    from pathlib import Path

    path = Path(path)
    digest, total, done = hashlib.sha256(), path.stat().st_size, 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()
