"""The README's pictures: made by the app itself (python -m app --screenshot), and none of them blank."""

from __future__ import annotations

import re
from pathlib import Path

from app_fixtures import ROOT, app_command, app_env, share_builtin_model
from PySide6.QtGui import QImage

import subprocess


def not_blank(path: Path) -> str:
    """'' when the picture shows a window (many colours, text-like detail), else what is wrong with it."""
    image = QImage(str(path))
    if image.isNull():
        return f"{path.name} cannot be read"
    if image.width() < 600 or image.height() < 400:
        return f"{path.name} is {image.width()}x{image.height()}"
    colours, changes = set(), 0
    for y in range(0, image.height(), 7):
        previous = None
        for x in range(0, image.width(), 3):
            pixel = image.pixel(x, y)
            colours.add(pixel)
            changes += previous is not None and pixel != previous
            previous = pixel
    samples = (image.height() // 7 + 1) * (image.width() // 3 + 1)
    if len(colours) < 40 or changes < samples * 0.02:
        return f"{path.name} looks blank ({len(colours)} colours, {changes} edges in {samples} samples)"
    return ""


def test_every_picture_in_the_readme_is_there_and_not_blank():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pictures = re.findall(r"\]\((docs/[^)]+\.png)\)", readme)
    assert len(pictures) >= 4, pictures
    problems = [not_blank(ROOT / p) if (ROOT / p).is_file() else f"{p} is missing" for p in pictures]
    assert not [p for p in problems if p], problems


def test_the_app_makes_a_page_picture_in_chinese(tmp_path, engine_host):
    home = tmp_path / "home"
    home.mkdir()
    share_builtin_model(home)
    shot = tmp_path / "模型页.png"
    made = subprocess.run(app_command("--screenshot", str(shot), "--page", "models", "--language", "zh_CN"),
                          env=app_env(home), cwd=ROOT, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert f"Saved {shot}" in made.stdout and not not_blank(shot)
