"""Chat model or base model: which prompt format ``auto`` picks for a checkpoint, and why.

A base model (pre-trained only) never learnt a chat format: driven through one and stopped only
on its end token, it writes on to the length limit and invents the next ``[INST]`` turn. So it
gets a plain transcript (``chat_template.BaseTranscriptTemplate``) that ends where a chat model's
answer would. What decides, first found wins:

1. the yaml's ``llama_desk: chat_template:`` (the built-in model's config says ``chatml``);
2. a Hugging Face ``tokenizer_config.json`` beside the checkpoint or tokenizer: one carrying a
   ``chat_template`` belongs to a chat model;
3. the download manifest (``checkpoint_download/models.yaml``): each model there says its kind,
   matched by the checkpoint's file name;
4. otherwise the LLaMA version's chat format, with a note saying how to choose ``base``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _tokenizer_config_says_chat(*paths: Path | None) -> bool | None:
    for path in paths:
        if path is None:
            continue
        folder = path if path.is_dir() else path.parent
        config = folder / "tokenizer_config.json"
        if config.is_file():
            try:
                return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
            except (OSError, ValueError):
                log.warning("cannot read %s", config)
    return None


def _manifest_kind(checkpoint: Path) -> str | None:
    """The kind the download manifest gives the model that has a file named like ``checkpoint``."""
    try:
        from checkpoint_download.manifest import load_models
        models = load_models()
    except Exception:  # noqa: BLE001 - no manifest (a trimmed install) or an unreadable one: unknown
        return None
    name = checkpoint.name
    kinds = {m.kind for m in models.values() if m.kind and any(f.name == name for f in m.files)}
    return kinds.pop() if len(kinds) == 1 else None


def choose_template(choice: str, version: int | None, checkpoint: Path | None, tokenizer: Path | None,
                    config_choice: str | None) -> tuple[str, str]:
    """(template name for ``chat_template.template_for``, a note for the user or "")."""
    if choice != "auto":
        return choice, ""
    if config_choice:
        return config_choice, ""
    chat_name = f"llama{version}" if version in (2, 3) else "chatml"
    says_chat = _tokenizer_config_says_chat(checkpoint, tokenizer)
    if says_chat is not None:
        return (chat_name, "") if says_chat else (
            "base", f"{checkpoint.name if checkpoint else 'This model'}: its tokenizer_config.json has no chat "
                    "template, so it is treated as a base model (plain User:/Assistant: transcript).")
    kind = _manifest_kind(checkpoint) if checkpoint is not None else None
    if kind == "base":
        return "base", (f"{checkpoint.name} is a base model (pre-trained, not chat-tuned): it chats through a plain "
                        "User:/Assistant: transcript that stops where the next turn would start. For chatting, "
                        "the chat models llama2-hf / llama3-hf answer better (python -m checkpoint_download list).")
    if kind == "chat":
        return chat_name, ""
    return chat_name, (f"Whether {checkpoint.name if checkpoint else 'this model'} is a chat or a base model is not "
                       f"known: using the LLaMA{version} chat format. If answers run on and invent the next turn, "
                       "choose the template 'base'.")
