"""A conversation as a Markdown document or a JSON object, written as UTF-8 (Chinese stays readable)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from .storage import Conversation, Message

EXPORT_FORMAT = 1
ROLE_TITLES = {"system": "System", "user": "User", "assistant": "Assistant"}


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
