"""The offline bundle for Windows (win_amd64, CPython 3.11), and the lock file the installers pin versions with.

    python installer/build_bundle.py --lock                      # re-resolve installer/requirements-lock.txt
    python installer/build_bundle.py [--out dist/bundle] [--python-zip python-3.11.9-embed-amd64.zip]
    python installer/build_bundle.py --check                     # every locked package has a win_amd64 wheel

Runs on any OS with pip and a PyPI (or a mirror: --mirror, as setup_llama_desk.py) to download from:
``pip download --platform win_amd64 --python-version 3.11 --only-binary=:all:`` gets Windows wheels
from Linux too. pip evaluates environment markers for the machine it runs on, not for the platform it
downloads for, so this script re-reads every package's requirements with Windows' markers and adds
what only Windows needs (e.g. colorama, which tqdm requires on Windows).
The bundle: ``wheels/`` (every wheel, pip's and the built-in model's included), the embeddable runtime
if given, and ``bundle.json`` (names, versions, sha256). ``build_windows.py --bundle`` packs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from build_windows import bundled_pip_wheel, build_app_wheel  # noqa: E402
from setup_llama_desk import BUILTIN_MODEL, LOCK, mirror_url  # noqa: E402

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

PLATFORM = ["--platform", "win_amd64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            "--only-binary=:all:"]
# sys.platform etc. of CPython 3.11 on 64-bit Windows 10/11, for environment markers
WINDOWS_MARKERS = {"implementation_name": "cpython", "implementation_version": "3.11.9", "os_name": "nt",
                   "platform_machine": "AMD64", "platform_python_implementation": "CPython",
                   "platform_release": "10", "platform_system": "Windows", "platform_version": "10.0.19045",
                   "python_full_version": "3.11.9", "python_version": "3.11", "sys_platform": "win32"}


class BundleError(Exception):
    pass


def resolve(requirements: list[str], index: list[str], constraints: Path | None = None,
            no_deps: bool = False) -> list[dict]:
    """pip's resolution for win_amd64 / cp311 (metadata only, nothing installed): the report's "install" list."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--quiet", "--dry-run",
                   "--ignore-installed", *PLATFORM, "--target", str(Path(tmp) / "target"), "--report", str(report),
                   *index, *(["--constraint", str(constraints)] if constraints else []),
                   *(["--no-deps"] if no_deps else []), *requirements]
        done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
        if done.returncode:
            raise BundleError("pip could not resolve for win_amd64 / CPython 3.11:\n" + done.stderr.strip())
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def windows_closure(items: list[dict]) -> tuple[set[str], list[str]]:
    """(names Windows needs, starting from what was asked for; requirements Windows needs that pip left out)."""
    by_name = {canonicalize_name(i["metadata"]["name"]): i for i in items}
    needed: set[str] = set()
    missing: list[str] = []
    todo = [(canonicalize_name(i["metadata"]["name"]), tuple(i.get("requested_extras") or ()))
            for i in items if i.get("requested")]
    while todo:
        name, extras = todo.pop()
        if name in needed and not extras:
            continue
        needed.add(name)
        for line in by_name[name]["metadata"].get("requires_dist") or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({**WINDOWS_MARKERS, "extra": e}) for e in ("", *extras)):
                continue
            dep = canonicalize_name(req.name)
            if dep not in by_name:
                missing.append(str(Requirement(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
                                               f"{req.specifier}")))
            elif dep not in needed or req.extras:
                todo.append((dep, tuple(sorted(req.extras))))
    return needed, sorted(set(missing))


def resolve_for_windows(requirements: list[str], index: list[str], constraints: Path | None = None) -> list[dict]:
    """resolve(), repeated with what only Windows' markers ask for until nothing is missing."""
    asked = list(requirements)
    for _ in range(5):
        items = resolve(asked, index, constraints)
        needed, missing = windows_closure(items)
        if not missing:
            return [i for i in items if canonicalize_name(i["metadata"]["name"]) in needed]
        print(f"Windows also needs: {', '.join(missing)}", flush=True)
        asked += missing
    raise BundleError(f"the Windows requirements did not settle; still missing {missing}")


def lock_text(items: list[dict]) -> str:
    pins = sorted(f"{canonicalize_name(i['metadata']['name'])}=={i['metadata']['version']}" for i in items
                  if canonicalize_name(i["metadata"]["name"]) != "llama-desk")
    return ("# Exact versions of llama-desk's dependencies, resolved for Windows (win_amd64, CPython 3.11), each a\n"
            "# wheel on PyPI. The installers install with these as constraints (setup_llama_desk.py).\n"
            "# Regenerate after changing pyproject.toml's dependencies: python installer/build_bundle.py --lock\n"
            + "\n".join(pins) + "\n")


def read_lock(path: Path = HERE / LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_bundle(out: Path, index: list[str], python_zip: Path | None) -> Path:
    wheels = out / "wheels"
    if out.exists():
        shutil.rmtree(out)
    wheels.mkdir(parents=True)
    app_wheel = build_app_wheel(wheels)
    items = resolve_for_windows([str(app_wheel)], index, HERE / LOCK)
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items
            if canonicalize_name(i["metadata"]["name"]) != "llama-desk"]
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--no-deps", *PLATFORM,
                    "-d", str(wheels), *index, *pins, BUILTIN_MODEL], check=True)
    shutil.copy2(bundled_pip_wheel(), wheels)
    info = {"platform": "win_amd64", "python": "3.11",
            "wheels": {p.name: sha256(p) for p in sorted(wheels.glob("*.whl"))}}
    if python_zip:
        shutil.copy2(python_zip, out / python_zip.name)
        info["python_zip"] = {python_zip.name: sha256(python_zip)}
    (out / "bundle.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"Bundle in {out}: {len(info['wheels'])} wheels, {size / 1e6:.0f} MB")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", action="store_true", help=f"re-resolve installer/{LOCK} and stop")
    parser.add_argument("--check", action="store_true", help=f"check that installer/{LOCK} resolves for win_amd64")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "bundle", help="bundle folder (dist/bundle)")
    parser.add_argument("--python-zip", type=Path, help="python-3.11.x-embed-amd64.zip (from python.org) to add")
    parser.add_argument("--mirror", help="PyPI mirror (tuna, aliyun, huawei or an index URL)")
    args = parser.parse_args(argv)
    url = mirror_url(args.mirror)
    index = ["--index-url", url] if url else []
    if args.lock:
        with tempfile.TemporaryDirectory() as tmp:
            items = resolve_for_windows([str(build_app_wheel(Path(tmp)))], index)
        (HERE / LOCK).write_text(lock_text(items), encoding="utf-8")
        print(f"Wrote installer/{LOCK}: {len(items) - 1} packages")
    elif args.check:
        items = resolve([f"{name}=={version}" for name, version in read_lock().items()], index, no_deps=True)
        for item in items:
            print(f"{item['metadata']['name']} {item['metadata']['version']}: "
                  f"{item['download_info']['url'].rsplit('/', 1)[-1]}")
    else:
        build_bundle(args.out, index, args.python_zip)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BundleError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as exc:
        print(f"build_bundle: a step failed (exit code {exc.returncode}); see the output above.", file=sys.stderr)
        sys.exit(1)
