"""Build the Windows installer (an NSIS .exe) on any machine that has ``makensis`` (Debian: ``apt-get install nsis``).

    python installer/build_windows.py                          # online installer (~10 MB): downloads Python
                                                               # and the packages when the user installs
    python installer/build_windows.py --bundle dist/bundle     # offline installer: everything inside (~500 MB)

The offline bundle comes from ``installer/build_bundle.py`` (the win_amd64 / cp311 wheels and, with
``--python-zip``, Python's embeddable runtime); an online build may carry the runtime too (``--python-zip``).
Output: ``dist/llama-desk-VERSION-setup.exe`` or ``dist/llama-desk-VERSION-offline-setup.exe``.
"""

from __future__ import annotations

import argparse
import ensurepip
import shutil
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))
from icon import ico  # noqa: E402
from setup_llama_desk import APP_ARGUMENTS  # noqa: E402

from engine import paths  # noqa: E402  (standard library only: the user-data folder and what is ours in it)

PAYLOAD = ("setup_llama_desk.py", "requirements-lock.txt", "get_python.ps1")
DATA_INCLUDE = "user_data.nsh"


class BuildError(Exception):
    pass


def project_version() -> str:
    """pyproject's [project] version (read without tomllib, which Python 3.10 lacks)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)[1]


def build_app_wheel(out_dir: Path) -> Path:
    """llama-desk itself as a wheel (pure Python)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir), str(ROOT)],
                   check=True)
    return max(out_dir.glob("llama_desk-*.whl"), key=lambda p: p.stat().st_mtime)


def bundled_pip_wheel() -> Path:
    """The pip wheel this Python's ensurepip carries: the embeddable runtime has no pip, and the setup runs this."""
    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not found:
        raise BuildError("this Python's ensurepip has no pip wheel: pass --pip-wheel (pip download --no-deps pip)")
    return found[-1]


def makensis_command(stage: Path, out_file: Path, version: str, app_wheel: str, pip_wheel: str,
                     offline: bool, python_zip: str | None) -> list[str]:
    defines = {"VERSION": version, "STAGE": str(stage), "OUTFILE": str(out_file), "APP_WHEEL": app_wheel,
               "PIP_WHEEL": pip_wheel}
    if python_zip:
        defines["BUNDLED_PYTHON"] = python_zip
    options = [f"-D{key}={value}" for key, value in defines.items()] + (["-DOFFLINE"] if offline else [])
    return ["makensis", "-V2", "-WX", "-INPUTCHARSET", "UTF8", *options, str(HERE / "llama-desk.nsi")]  # -WX: a warning fails


def user_data_include() -> str:
    """llama-desk.nsi's user-data folder, its "remove data" list and the running app's mutex, from engine.paths.

    The downloads (``paths.DOWNLOAD_FOLDERS``) are a list of their own: the user's 13-30 GB of checkpoints
    go only when a box of its own, which shows their size, is ticked.
    """
    lines = ["; Written by installer/build_windows.py from engine/paths.py at build time: do not edit.",
             f'!define DATA_HOME_ENV "{paths.HOME_ENV}"',
             f'!define DATA_FOLDER "{paths.APP_FOLDER}"  ; in $LOCALAPPDATA unless DATA_HOME_ENV names one',
             f'!define APP_MUTEX "{paths.APP_RUNNING_MUTEX}"  ; held by the running app',
             f'!define APP_ARGS "{" ".join(APP_ARGUMENTS)}"  ; pythonw.exe <these>: the app, never a stray folder',
             "!macro RemoveOurData"]
    lines += [f'  Delete "$DataDir\\{name}"' for name in paths.OUR_FILES]
    lines += [f'  RMDir /r "$DataDir\\{name}"' for name in paths.OUR_FOLDERS]
    lines += ['  RMDir "$DataDir"  ; only when nothing else is left in it', "!macroend", "!macro RemoveDownloads"]
    lines += [f'  RMDir /r "$DataDir\\{name}"' for name in paths.DOWNLOAD_FOLDERS]
    lines += ["!macroend", "!macro SizeOfDownloads OUT  ; in MB", "  StrCpy ${OUT} 0"]
    for name in paths.DOWNLOAD_FOLDERS:
        lines += ["  ClearErrors", f'  ${{GetSize}} "$DataDir\\{name}" "/S=0M" $R0 $R1 $R2', "  ${If} ${Errors}",
                  "    StrCpy $R0 0", "  ${EndIf}", "  IntOp ${OUT} ${OUT} + $R0"]
    lines += ["!macroend", ""]
    return "\n".join(lines)


def stage_files(stage: Path, app_wheel: Path, pip_wheel: Path, bundle: Path | None, python_zip: Path | None) -> None:
    if stage.exists():
        shutil.rmtree(stage)
    payload = stage / "payload"
    payload.mkdir(parents=True)
    (stage / "llama-desk.ico").write_bytes(ico())
    (stage / DATA_INCLUDE).write_text(user_data_include(), encoding="utf-8")
    for name in PAYLOAD:
        shutil.copy2(HERE / name, payload / name)
    shutil.copy2(app_wheel, payload / app_wheel.name)
    shutil.copy2(pip_wheel, payload / pip_wheel.name)
    if python_zip:
        shutil.copy2(python_zip, payload / python_zip.name)
    if bundle:
        wheels = sorted((bundle / "wheels").glob("*.whl"))
        if not wheels:
            raise BuildError(f"{bundle / 'wheels'} holds no wheels: run installer/build_bundle.py first")
        (stage / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, stage / "wheels" / wheel.name)


def build(out_dir: Path, bundle: Path | None = None, python_zip: Path | None = None, app_wheel: Path | None = None,
          pip_wheel: Path | None = None, stage: Path | None = None) -> Path:
    if shutil.which("makensis") is None:
        raise BuildError("makensis is not installed (Debian/Ubuntu: apt-get install nsis; Windows: nsis.sourceforge.io)")
    version = project_version()
    stage = stage or ROOT / "build" / "windows-installer"
    if bundle and python_zip is None:
        python_zip = next(iter(sorted(bundle.glob("python-3.11.*-embed-amd64.zip"))), None)
    if bundle and pip_wheel is None:
        pip_wheel = next(iter(sorted((bundle / "wheels").glob("pip-*.whl"))), None)
    app_wheel = app_wheel or build_app_wheel(stage.parent / "app-wheel")
    pip_wheel = pip_wheel or bundled_pip_wheel()
    stage_files(stage, app_wheel, pip_wheel, bundle, python_zip)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / f"llama-desk-{version}-{'offline-' if bundle else ''}setup.exe"
    command = makensis_command(stage, out_file, version, app_wheel.name, pip_wheel.name, bool(bundle),
                               python_zip.name if python_zip else None)
    print("+ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    print(f"Built {out_file} ({out_file.stat().st_size / 1e6:.1f} MB)")
    return out_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="an offline bundle (installer/build_bundle.py): an offline installer")
    parser.add_argument("--python-zip", type=Path, help="python-3.11.x-embed-amd64.zip to carry inside")
    parser.add_argument("--app-wheel", type=Path, help="a llama-desk wheel already built (default: build one)")
    parser.add_argument("--pip-wheel", type=Path, help="the pip wheel to carry (default: this Python's ensurepip one)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    build(args.out, args.bundle, args.python_zip, args.app_wheel, args.pip_wheel)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as exc:
        print(f"build_windows: {exc}", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as exc:
        print(f"build_windows: a step failed (exit code {exc.returncode}); see the output above.", file=sys.stderr)
        sys.exit(1)
