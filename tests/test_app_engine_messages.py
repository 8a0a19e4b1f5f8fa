"""The engine's messages in the Chinese UI: every error the engine raises has a code with a Chinese wording that
uses only the values the engine passes; the window shows it in Chinese (the CLI keeps English); error text is
readable in the dark theme."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest
from app_fixtures import ROOT, quick_prefs

from app.engine_messages import ZH_CN
from app.preferences import ModelChoice

ERRORS = {"EngineError", "ConfigError", "CheckpointError", "TokenizerError", "GenerationError", "ContextOverflow",
          "Cancelled", "EngineBusy"}


def engine_raises() -> list[tuple[str, list[str], set[str] | None]]:
    """(where, codes, the params' keys or None when not a literal dict) of every engine error made in engine/."""
    found = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None)
            name = getattr(name, "id", getattr(name, "attr", "")) if isinstance(node, ast.Call) else ""
            if name not in ERRORS:
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            code = keywords.get("code")
            codes = ([code.value] if isinstance(code, ast.Constant) else
                     [code.body.value, code.orelse.value] if isinstance(code, ast.IfExp) else [])
            params = keywords.get("params")
            keys = {k.value for k in params.keys} if isinstance(params, ast.Dict) else set() if params is None else None
            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", codes, keys))
    return found


def placeholders(template: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


def test_every_engine_error_has_a_code_with_a_chinese_wording_that_uses_only_its_values():
    raises = engine_raises()
    assert len(raises) > 100
    without = [where for where, codes, _ in raises if not codes]
    assert not without, f"engine errors without a code: {without}"
    used = set()
    for where, codes, keys in raises:
        for code in codes:
            used.add(code)
            assert code in ZH_CN, f"{where}: no Chinese wording for {code!r} (app/engine_messages.py)"
            if keys is not None:
                assert placeholders(ZH_CN[code]) <= keys, f"{where}: {code} uses {placeholders(ZH_CN[code]) - keys}"
    assert not set(ZH_CN) - used, f"wordings no engine error uses: {sorted(set(ZH_CN) - used)}"


@pytest.fixture
def chinese_ui(app_qt):
    from app import translations
    assert translations.install(app_qt, "zh_CN") == "zh_CN"
    yield
    translations.install(app_qt, "en")


def test_the_chinese_window_shows_the_engines_message_in_chinese_and_the_cli_keeps_english(
        qtbot, chinese_ui, open_window, home):
    from engine import EngineError, ModelSource, check_model_files
    from fixtures import run_cli

    from app.conversation_settings import check_values
    from app.engine_worker import EngineHost

    missing = home / "模型" / "llama2_7b.ckpt"
    prefs = quick_prefs()
    prefs.model = ModelChoice(source="llama2", checkpoint=str(missing))
    window = open_window(prefs, engine=EngineHost())
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=30_000)
    assert window.notice.text().startswith(f"找不到检查点：{missing}。LLaMA2 的文件可以用 checkpoint_download 下载。")
    assert "使用内置模型" in [b.text() for b in window.notice.buttons]
    assert check_values({"top_p": 0}) == "top_p 必须大于 0 且不超过 1（1 = 关闭），实际是 0。"
    with pytest.raises(EngineError) as english:
        check_model_files(ModelSource(version=2, checkpoint=missing))
    assert str(english.value).startswith(f"Checkpoint not found: {missing}.")     # the engine's own words
    cli = run_cli("run_model.py", "-V", "2", "-M", str(missing), "--prompt", "hi", home=home)
    assert cli.returncode == 2 and "Checkpoint not found" in cli.stderr + cli.stdout


def _contrast(a, b) -> float:
    def luminance(c) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_error_text_is_readable_in_both_themes(qtbot, app_qt, theme):
    from PySide6.QtGui import QPalette

    from app.settings_dialog import SettingsDialog
    from app.theme import apply_theme

    apply_theme(theme)
    try:
        dialog = SettingsDialog(quick_prefs(), page="model")
        qtbot.addWidget(dialog)
        dialog.show()
        dialog.model._problem(ValueError("something went wrong"))
        label = dialog.model.result
        label.ensurePolished()
        text, background = label.palette().color(QPalette.ColorRole.WindowText), dialog.palette().color(
            QPalette.ColorRole.Window)
        assert _contrast(text, background) >= 4.5, (theme, text.name(), background.name())   # WCAG AA
    finally:
        apply_theme("light")
