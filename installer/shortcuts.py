"""The installed app's menu entries: a Linux desktop entry, or Start-menu and desktop shortcuts on Windows.

Used by setup_llama_desk.py when it installs from a source folder (the Windows installer makes its own
shortcuts). The app is started with ``setup_llama_desk.APP_ARGUMENTS`` (``-I -m app``: the working folder
is never on ``sys.path``); paths with spaces and Chinese are kept whole: the desktop entry quotes them as
the specification says, and the Windows shortcut gets them through the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import setup_llama_desk as setup


def desktop_quote(arg: str) -> str:
    """One argument of a desktop entry's Exec key (Desktop Entry Specification, "The Exec key")."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`%'):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return '"' + escaped.replace("%", "%%") + '"'


def desktop_string(value: str) -> str:
    """A desktop entry string value: backslash escapes (the file is UTF-8, so 中文 stays as it is)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def desktop_entry(command: list[str], icon: Path, workdir: Path) -> str:
    # Exec is a string value too: its quoting rules apply to the text after the string's own escapes.
    exec_line = desktop_string(" ".join(desktop_quote(a) for a in command))
    return "\n".join([
        "[Desktop Entry]", "Type=Application", "Version=1.0", f"Name={setup.APP}", "Name[zh_CN]=llama-desk 本地聊天",
        "GenericName=Local LLaMA chat", "Comment=Chat with LLaMA2/LLaMA3 on this computer's CPU",
        "Comment[zh_CN]=在本机 CPU 上与 LLaMA2/LLaMA3 聊天", f"Exec={exec_line}", f"Path={desktop_string(str(workdir))}",
        f"Icon={desktop_string(str(icon))}", "Terminal=false", "Categories=Utility;", "StartupNotify=true", ""])


# Shortcut paths travel in environment variables, never inside the command line: no quoting to get wrong.
WINDOWS_SHORTCUTS_PS = r"""
$shell = New-Object -ComObject WScript.Shell
foreach ($folder in @([Environment]::GetFolderPath('Programs'), [Environment]::GetFolderPath('Desktop'))) {
  $path = Join-Path $folder 'llama-desk.lnk'
  $link = $shell.CreateShortcut($path)
  $link.TargetPath = $env:LLAMA_DESK_TARGET
  $link.Arguments = $env:LLAMA_DESK_ARGUMENTS
  $link.WorkingDirectory = $env:LLAMA_DESK_WORKDIR
  $link.IconLocation = $env:LLAMA_DESK_ICON
  $link.Description = 'llama-desk'
  $link.Save()
  [Console]::Out.WriteLine($path)
}
"""


def windows_shortcut_command(plan: setup.Plan, icon: Path) -> tuple[list[str], dict[str, str]]:
    env = {"LLAMA_DESK_TARGET": str(plan.gui_python), "LLAMA_DESK_ARGUMENTS": " ".join(setup.APP_ARGUMENTS),
           "LLAMA_DESK_WORKDIR": str(plan.prefix), "LLAMA_DESK_ICON": str(icon)}
    command = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
               "-Command", "[Console]::OutputEncoding = [Text.Encoding]::UTF8;" + WINDOWS_SHORTCUTS_PS]
    return command, env


def make_shortcuts(plan: setup.Plan) -> list[str]:
    """Make them; returns what was made (the uninstaller removes those)."""
    from icon import write_icons

    if setup.is_windows(plan.platform):
        icon = plan.prefix / f"{setup.APP}.ico"
        write_icons(ico_path=icon)
        command, env = windows_shortcut_command(plan, icon)
        done = setup.run(command, env={**os.environ, **env}, capture_output=True, text=True, encoding="utf-8")
        return [str(icon)] + [line for line in done.stdout.splitlines() if line.strip()]
    icon = plan.prefix / f"{setup.APP}.png"
    write_icons(png_path=icon)
    entry = setup.xdg_data_home() / "applications" / f"{setup.APP}.desktop"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry([str(plan.venv / "bin" / setup.APP)], icon, plan.prefix), encoding="utf-8")
    return [str(icon), str(entry)]
