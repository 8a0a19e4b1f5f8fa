"""Is the checkpoint damaged? A CRC check when the file carries one, and a scan for NaN/Inf.

A few flipped bytes inside tensor data parse fine and load silently; the model
then prints garbage. ``save_checkpoint(crc_check=True)`` ends a ``.ckpt`` with
a CRC32 of everything before it: we verify it the first time we see a file and
remember (path, size, mtime) in the user-data folder, so later starts do not
re-read 16 GB. The CRC pass reads the file with ordinary reads into one reused
buffer, not through the memory map: Windows has no ``MADV_DONTNEED``, so pages
touched through the map would stay in the working set (all 16 GB). A record
that cannot be written (a locked or read-only file) only means the next start
checks again. ``scan_nonfinite`` reads every tensor and names those holding
NaN or Inf (the front ends' "verify" action).
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from typing import Callable

import numpy as np

from engine.atomic_write import write_text_atomically
from engine.errors import Cancelled, CheckpointError
from engine.paths import verified_record

from .tensor_source import TensorSource

log = logging.getLogger(__name__)
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
    """Note a passed check; never fails a load (the next start then checks again)."""
    record = _load_record()
    record[key] = "crc-ok"
    try:
        write_text_atomically(verified_record(), json.dumps(record, ensure_ascii=False, indent=0))
    except OSError as exc:
        log.warning("could not note in %s that the CRC of %s passed (%s); it is checked again next time",
                    verified_record(), key.split("|")[0], exc)


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
    value, block = 0, memoryview(bytearray(_BLOCK))
    for begin in range(0, covered, _BLOCK):
        if cancel is not None and cancel.is_set():
            raise Cancelled("Loading was cancelled.",
                            code="load_cancelled")
        end = min(begin + _BLOCK, covered)
        mapped.read_into(begin, block[:end - begin])
        value = zlib.crc32(block[:end - begin], value)
        if progress:
            progress(end, covered)
    if value != stored:
        path = source.path
        source.close()
        raise CheckpointError(
            f"{path} is damaged: its CRC32 check fails (stored {stored:#010x}, computed {value:#010x}), so some "
            "bytes changed after it was saved. Download it again.", path=path, subject="weights",
            code="checkpoint_crc_mismatch",
            params={"path": path, "stored": f"{stored:#010x}", "computed": f"{value:#010x}"})
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
                    raise Cancelled("Verification was cancelled.",
                                    code="verify_cancelled")
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
