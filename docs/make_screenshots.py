"""Make the README's pictures with the real app: ``python docs/make_screenshots.py [NAME.png ...]``.

Each is one ``python -m app --screenshot`` run (the built-in model, a short scripted chat in a temporary
history, or a page of the app), offscreen unless QT_QPA_PLATFORM says otherwise. The runs see a fresh
user, "alice", with her home in /tmp/home/alice (a unique temporary folder when that is taken), her own
models folder and copy of the program, so no path of this machine shows in a picture; the built-in model
already converted in this user's data folder (or ``--share-from DIR``) is linked in, not converted again.
Make the chat pictures on a quiet machine: their footers show the speed. Chinese needs a CJK font
(Debian: apt-get install fonts-wqy-microhei; Windows has one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SHOTS = {  # file: the app's options
    "chat-light-en.png": ["--language", "en", "--theme", "light"],
    "chat-dark-zh.png": ["--language", "zh_CN", "--theme", "dark"],
    "models-en.png": ["--language", "en", "--theme", "light", "--page", "models"],
    "settings-zh.png": ["--language", "zh_CN", "--theme", "light", "--page", "settings"],
}
PROGRAM = ("app", "engine", "checkpoint_download", "configs", "api_server", "pyproject.toml", "cli_support.py")
SHARED = ("models", "jit-cache")          # engine.paths: CONVERTED_FOLDER, JIT_CACHE_FOLDER
USER_ENV = ("LLAMA_DESK_HOME", "LLAMA_DESK_MODELS_DIR", "XDG_DATA_HOME", "LOCALAPPDATA", "APPDATA")


def neutral_user(root: Path, share_from: Path) -> dict:
    """The environment of a new user "alice" under ``root``: her home, her models folder, this machine's
    converted built-in model and compiled kernels linked in."""
    home = root / "home" / "alice"
    env = {k: v for k, v in os.environ.items() if k not in USER_ENV}
    env.update(HOME=str(home), USERPROFILE=str(home), PYTHONIOENCODING="utf-8")
    if sys.platform == "win32":
        env["LOCALAPPDATA"] = str(home / "AppData" / "Local")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    code = ("import sys; from engine import paths; paths.choose_models_dir(sys.argv[1]); "
            "print(paths.user_data_dir())")
    data = subprocess.run([sys.executable, "-c", code, str(home / "Models")], cwd=HERE.parent, env=env,
                          check=True, capture_output=True, text=True).stdout.strip()
    for name in SHARED:
        source = share_from / name
        if source.is_dir():
            try:
                (Path(data) / name).symlink_to(source, target_is_directory=True)
            except OSError:       # Windows without the symlink privilege: the run converts it again
                pass
    return env


def copy_program(dest: Path) -> Path:
    """The program's files in ``dest`` (its default paths, e.g. the configs, then show there)."""
    for name in PROGRAM:
        source = HERE.parent / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def main(argv: list[str]) -> int:
    from engine.paths import user_data_dir
    share_from = user_data_dir(create=False)
    if "--share-from" in argv:
        at = argv.index("--share-from")
        share_from = Path(argv[at + 1]).resolve()   # linked into alice's home: a relative link would dangle
        del argv[at:at + 2]
    root = Path(tempfile.gettempdir())          # alice's home reads /tmp/home/alice: a plain, stable path
    if (root / "home").exists():                # taken (another run, or a real folder): a unique one
        root = Path(tempfile.mkdtemp(prefix="shots-"))
    made = root / "home"
    try:
        env = neutral_user(root, share_from)
        program = copy_program(Path(env["HOME"]) / "llama-desk")
        for name in argv or list(SHOTS):
            command = [sys.executable, "-m", "app", "--screenshot", str(HERE / name), *SHOTS[name]]
            print("+", " ".join(command[1:]), flush=True)
            if subprocess.run(command, cwd=program, env=env).returncode != 0:
                return 1
    finally:
        shutil.rmtree(made, ignore_errors=True)   # (the links to the shared folders go, not what they point to)
        if root != Path(tempfile.gettempdir()):
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
