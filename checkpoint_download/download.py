"""Download a model's files with resume, progress and checksum, using only the standard library.

    python checkpoint_download/download.py llama2          # files listed in llama2/files.json
    python checkpoint_download/download.py llama3 --url llama3-8B.ckpt=https://mirror/llama3-8B.ckpt

A file is written as ``<name>.part`` and renamed only when complete (and its
sha256 matches, when the manifest gives one), so an interrupted download is
resumed with an HTTP Range request and a half-written file is never mistaken
for a checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = 1 << 20


class DownloadError(Exception):
    """A download that cannot complete, with a message a user can act on."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _report(name: str, done: int, total: int | None, started: float) -> None:
    speed = done / max(time.monotonic() - started, 1e-6) / 1e6
    size = f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB ({100 * done // total}%)" if total else f"{done / 1e6:,.0f} MB"
    print(f"\r{name}: {size} at {speed:.1f} MB/s   ", end="", file=sys.stderr, flush=True)


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` into ``dest``, resuming ``dest.part`` if present."""
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or _sha256(dest) == sha256):
        print(f"{dest.name}: already downloaded", file=sys.stderr)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the .part is complete
            response = None
        else:
            raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}). Check the address, "
                                "or download the file by hand into " + str(dest.parent)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"Cannot reach {url}: {exc}. Check the network and run the script again; "
                            "it resumes where it stopped.") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            mode = "ab" if resumed else "wb"
            done = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length else None
            started, last = time.monotonic(), 0.0
            try:
                with open(part, mode) as out:
                    for block in iter(lambda: response.read(BLOCK), b""):
                        out.write(block)
                        done += len(block)
                        if time.monotonic() - last > 0.5:
                            _report(dest.name, done, total, started)
                            last = time.monotonic()
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(f"The download of {dest.name} stopped at {done / 1e6:,.0f} MB ({exc}). "
                                    "Run the script again to resume.") from None
            _report(dest.name, done, total, started)
            print(file=sys.stderr)
            if total is not None and done < total:
                raise DownloadError(f"The download of {dest.name} stopped at {done} of {total} bytes. "
                                    "Run the script again to resume.")
    if sha256 is not None:
        actual = _sha256(part)
        if actual != sha256:
            bad = part.with_name(dest.name + ".bad")
            part.replace(bad)
            raise DownloadError(f"{dest.name} is corrupt: sha256 {actual}, expected {sha256}. "
                                f"It was moved to {bad.name}; run the script again to download it afresh.")
    part.replace(dest)
    return dest


def load_manifest(model: str) -> list[dict]:
    path = HERE / model / "files.json"
    if not path.is_file():
        raise DownloadError(f"Unknown model {model!r}: no {path}. Choose one of: "
                            + ", ".join(p.parent.name for p in HERE.glob("*/files.json")))
    return json.loads(path.read_text(encoding="utf-8"))["files"]


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    parser = argparse.ArgumentParser(description="Download a model's checkpoint and tokenizer.")
    parser.add_argument("model", help="llama2 or llama3")
    parser.add_argument("--dest", type=Path, help="folder to write to (default: checkpoint_download/<model>/)")
    parser.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                        help="use another address (a mirror) for one file")
    args = parser.parse_args(argv)
    try:
        overrides = dict(item.split("=", 1) for item in args.url)
        files = load_manifest(args.model)
        for entry in files:
            url = overrides.get(entry["name"], entry.get("url"))
            if not url:
                raise DownloadError(f"{entry['name']}: {entry.get('note', 'no public address is known')}. "
                                    f"Pass one with --url {entry['name']}=<address>, or copy the file into "
                                    f"{args.dest or HERE / args.model}.")
            download(url, (args.dest or HERE / args.model) / entry["name"], entry.get("sha256"))
    except (DownloadError, ValueError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
