"""A conversation as a Markdown document or a JSON object, written as UTF-8 (Chinese stays readable)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path

from .atomic_write import write_text_atomically
from .storage import Conversation, Message

EXPORT_FORMAT = 1
ROLE_TITLES = {"system": "System", "user": "User", "assistant": "Assistant"}
# Names Windows reserves for devices, with any extension ("CON.md" opens the console, not a file)
DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"{port}{i}" for port in ("COM", "LPT") for i in "0123456789¹²³")}
NAME_CHARS = 80


def safe_file_name(title: str, fallback: str = "chat") -> str:
    """A file name made from a conversation's title that Windows, macOS and Linux all accept."""
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f\x7f]', " ", title)      # separators, wildcards, control characters
    name = " ".join(name.split())[:NAME_CHARS].rstrip(". ")         # Windows drops trailing dots and spaces
    if name.split(".")[0].rstrip(" ").upper() in DEVICE_NAMES:
        name = "_" + name
    return name or fallback


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def to_markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conversation.title}", "", f"*{_when(conversation.created_at)}*", ""]
    if conversation.system_prompt:
        lines += ["## System", "", conversation.system_prompt, ""]
    for m in messages:
        heading = f"## {ROLE_TITLES.get(m.role, m.role)}"
        if not m.complete:
            heading += " (incomplete)"
        lines += [heading, "", m.content, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(conversation: Conversation, messages: list[Message]) -> dict:
    """Everything stored, plus an OpenAI-style ``messages`` list another tool can load as is."""
    history = ([{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else [])
    history += [{"role": m.role, "content": m.content} for m in messages]
    return {"format": "llama-desk-conversation", "format_version": EXPORT_FORMAT,
            "conversation": asdict(conversation), "messages": history,
            "details": [asdict(m) for m in messages]}


def write_export(path: str | Path, conversation: Conversation, messages: list[Message]) -> Path:
    """Write ``.json`` as JSON, anything else as Markdown; atomically, so a failed write leaves no half file."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(to_json(conversation, messages), ensure_ascii=False, indent=2) + "\n"
    else:
        text = to_markdown(conversation, messages)
    return write_text_atomically(path, text)
