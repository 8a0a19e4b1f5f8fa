"""Make the README's pictures with the real app: ``python docs/make_screenshots.py``.

Each is one ``python -m app --screenshot`` run (the built-in model, a short scripted chat in a temporary
history, or a page of the app), offscreen unless QT_QPA_PLATFORM says otherwise. Chinese needs a CJK
font (Debian: apt-get install fonts-wqy-microhei; Windows has one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHOTS = {  # file: the app's options
    "chat-light-en.png": ["--language", "en", "--theme", "light"],
    "chat-dark-zh.png": ["--language", "zh_CN", "--theme", "dark"],
    "models-en.png": ["--language", "en", "--theme", "light", "--page", "models"],
    "settings-zh.png": ["--language", "zh_CN", "--theme", "light", "--page", "settings"],
}


def main(argv: list[str]) -> int:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    wanted = argv or list(SHOTS)
    for name in wanted:
        command = [sys.executable, "-m", "app", "--screenshot", str(HERE / name), *SHOTS[name]]
        print("+", " ".join(command[1:]), flush=True)
        if subprocess.run(command, cwd=HERE.parent, env=env).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
