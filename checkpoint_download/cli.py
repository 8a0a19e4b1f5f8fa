"""``python -m checkpoint_download``: download a model, fetch one file, or list the models.

Prints a progress bar per file (speed and ETA) and one line per event worth knowing; errors are
one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .api import download_model, fetch, list_models, model_status
from .errors import DownloadCancelled, DownloadError
from .local_files import human
from .manifest import MANIFEST, get_model
from .progress import ProgressEvent, State

COMMANDS = ("get", "fetch", "list")
KIND_TEXT = {"chat": "chat model (answers in turns: recommended for chatting)",
             "base": "base model (pre-trained only, continues text; for chatting prefer llama2-hf / llama3-hf)"}
USAGE = """python -m checkpoint_download MODEL [-o DIR]           download a model (same as: get MODEL)
       python -m checkpoint_download fetch URL [URL ...] -o PATH [--sha256 HEX]
       python -m checkpoint_download list [MODEL] [-o DIR]"""


class ProgressBars:
    """Turns ProgressEvents into tqdm bars on stderr, and their messages into lines above the bars."""

    def __init__(self):
        self.bar: tqdm | None = None
        self.key: tuple[str, str] | None = None
        self.done = 0

    def __call__(self, event: ProgressEvent) -> None:
        phase = "checking" if event.state == State.CHECKING else "download"
        if event.state in (State.DOWNLOADING, State.CHECKING) and self.key != (event.file, phase):
            self.close()
            label = f"checking {event.file}" if phase == "checking" else event.file
            self.bar = tqdm(total=event.total_bytes, initial=event.done_bytes, desc=label, unit="B",
                            unit_scale=True, unit_divisor=1000, file=sys.stderr, dynamic_ncols=True, leave=False)
            self.key, self.done = (event.file, phase), event.done_bytes
        if self.bar is not None and self.key and self.key[0] == event.file:
            if event.total_bytes != self.bar.total:
                self.bar.total = event.total_bytes
            if event.done_bytes < self.done:
                self.bar.reset(total=event.total_bytes)
                self.done = 0
            self.bar.update(event.done_bytes - self.done)
            self.done = event.done_bytes
        if event.state in (State.DONE, State.FAILED, State.CANCELLED, State.MIRROR_FAILED, State.RESTARTING):
            self.close()  # the bar goes; the message below says what happened
        if event.message and event.state not in (State.FAILED, State.CANCELLED):  # those end as the error line
            tqdm.write(event.message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key, self.done = None, None, 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m checkpoint_download", usage=USAGE,
                                     description="Download LLaMA checkpoints and tokenizers: resumable, "
                                                 "from mirrors, verified by size and SHA-256.")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)  # tests, other lists
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="download a model's files (llama2, llama3, ...)")
    get.add_argument("model")
    get.add_argument("-o", "--dest", type=Path, help="folder to write to (default: <models folder>/<model>/, as the app and run_model.py look)")
    get.add_argument("--mirror", "--url", action="append", default=[], metavar="NAME=URL",
                     help="another address for one file, tried first (repeatable)")
    one = sub.add_parser("fetch", help="download one file from one or more mirrors")
    one.add_argument("urls", nargs="+", metavar="URL", help="addresses of the same file, tried in order")
    one.add_argument("-o", "--output", type=Path, required=True, metavar="PATH", help="file (or folder) to write")
    one.add_argument("--sha256", help="expected SHA-256; the file is refused if it differs")
    show = sub.add_parser("list", help="show the models, their files and what is on disk")
    show.add_argument("model", nargs="?")
    show.add_argument("-o", "--dest", type=Path, help="folder to look in (with MODEL)")
    return parser


def _mirrors(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise DownloadError(f"--mirror {item!r}: write it as NAME=URL, e.g. llama2_7b.ckpt=https://host/llama2_7b.ckpt")
        out.setdefault(name, []).append(url)
    return out


def _list(args) -> None:
    models = [get_model(args.model, args.manifest)] if args.model else list_models(args.manifest)
    for model in models:
        folder = args.dest if args.dest and args.model else model.folder
        print(f"{model.name}: {model.description}\n  kind: {KIND_TEXT.get(model.kind, 'not known')}\n  folder: {folder}")
        for st in model_status(model, folder):
            size = human(st.size) if st.size else "size unknown"
            have = f" ({human(st.have_bytes)})" if st.state == "partial" else ""
            print(f"  {st.name:<36} {size:>12}  sha256 {st.checksum:<18} {st.state}{have}")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    argv = list(sys.argv[1:] if argv is None else argv)
    i = 0
    while i < len(argv):  # "python -m checkpoint_download llama2" is the common case: it means "get llama2"
        if argv[i] == "--manifest":
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            if argv[i] not in COMMANDS:
                argv.insert(i, "get")
            break
    args = _parser().parse_args(argv)
    bars = ProgressBars()
    try:
        if args.command == "list":
            _list(args)
        elif args.command == "fetch":
            fetch(args.urls, args.output, args.sha256, progress=bars)
        else:
            paths = download_model(args.model, args.dest, progress=bars, extra_mirrors=_mirrors(args.mirror),
                                   manifest=args.manifest)
            print(f"{args.model}: {len(paths)} files ready in {paths[0].parent}", file=sys.stderr)
    except DownloadCancelled as exc:
        bars.close()
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except DownloadError as exc:
        bars.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bars.close()
        print("error: stopped. The .part file keeps what was received; run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0
