"""Chat prompt formats, built from token ids.

Special tokens are inserted by id; message text is encoded as plain text, so a
user who types ``<|eot_id|>`` gets those characters, not an end of turn. The
LLaMA2 rules follow Meta's ``chat_completion`` to the token (system prompt
folded into the first user turn, each finished exchange wrapped in BOS/EOS,
special tags refused); LLaMA3 follows Meta's ``ChatFormat``; ChatML is what
SmolLM2-Instruct, the built-in model, was trained with.
"""

from __future__ import annotations

import abc
from typing import Mapping, Sequence

from engine.errors import GenerationError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Each message a mapping with a known role and text content; the last one the user's."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise GenerationError(f"A conversation is a list of messages ({{'role': ..., 'content': ...}}), "
                              f"got {type(messages).__name__}.")
    if not messages:
        raise GenerationError("The conversation is empty: type a message first.")
    for n, m in enumerate(messages, 1):
        if not isinstance(m, Mapping):
            raise GenerationError(f"Message {n} must be a mapping with 'role' and 'content', got {type(m).__name__}.")
        if m.get("role") not in ("system", "user", "assistant"):
            raise GenerationError(f"Message {n} has an unknown role {m.get('role')!r}: use system, user or assistant.")
        if not isinstance(m.get("content"), str):
            raise GenerationError(f"Message {n} ({m['role']}) needs text content, got "
                                  f"{type(m.get('content')).__name__}.")
    if messages[-1]["role"] != "user":
        raise GenerationError("The last message must be the user's: there is nothing to answer.")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class ChatTemplate(abc.ABC):
    name = "template"
    default_system: str | None = None

    @abc.abstractmethod
    def render(self, messages: Sequence[Message], tokenizer) -> list[int]:
        """Token ids of the whole conversation, ending where the assistant's answer starts."""


class Llama2ChatTemplate(ChatTemplate):
    """``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>``..."""

    name = "llama2-chat"
    B_INST, E_INST = "[INST]", "[/INST]"
    B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
    SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")

    def render(self, messages, tokenizer) -> list[int]:
        dialog = check_messages(messages)
        # Meta refuses its markers in what people type; an answer the model wrote may quote them
        # and is encoded as plain text, so an old answer can never block the conversation.
        if any(tag in m["content"] for tag in self.SPECIAL_TAGS for m in dialog if m["role"] != "assistant"):
            raise GenerationError("LLaMA2-chat does not allow the text [INST], [/INST], <<SYS>> or <</SYS>> "
                                  "in a user or system message (they are its prompt markers). Rephrase without them.")
        if dialog[0]["role"] == "system":
            if len(dialog) < 2:
                raise GenerationError("A system prompt needs a user message after it.")
            dialog = [{"role": dialog[1]["role"],
                       "content": self.B_SYS + dialog[0]["content"] + self.E_SYS + dialog[1]["content"]}] + dialog[2:]
        roles = [m["role"] for m in dialog]
        if roles[0::2] != ["user"] * len(roles[0::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
            raise GenerationError("LLaMA2-chat needs user and assistant messages to alternate, starting with user.")
        ids: list[int] = []
        for prompt, answer in zip(dialog[0::2], dialog[1::2]):
            text = f"{self.B_INST} {prompt['content'].strip()} {self.E_INST} {answer['content'].strip()} "
            ids += tokenizer.encode(text, bos=True) + [tokenizer.eos_id]
        ids += tokenizer.encode(f"{self.B_INST} {dialog[-1]['content'].strip()} {self.E_INST}", bos=True)
        return ids


class Llama3ChatTemplate(ChatTemplate):
    """``<|begin_of_text|>`` then ``<|start_header_id|>role<|end_header_id|>\\n\\ntext<|eot_id|>`` per message."""

    name = "llama3-instruct"

    def _header(self, role: str, tok) -> list[int]:
        return ([tok.special_id("<|start_header_id|>")] + tok.encode(role)
                + [tok.special_id("<|end_header_id|>")] + tok.encode("\n\n"))

    def render(self, messages, tokenizer) -> list[int]:
        dialog = check_messages(messages)
        ids = [tokenizer.special_id("<|begin_of_text|>")]
        for m in dialog:
            ids += self._header(m["role"], tokenizer) + tokenizer.encode(m["content"].strip())
            ids.append(tokenizer.special_id("<|eot_id|>"))
        return ids + self._header("assistant", tokenizer)


class ChatMLTemplate(ChatTemplate):
    """``<|im_start|>role\\ntext<|im_end|>\\n`` per message (SmolLM2-Instruct)."""

    name = "chatml"

    def __init__(self, default_system: str | None = None):
        self.default_system = default_system

    def render(self, messages, tokenizer) -> list[int]:
        dialog = check_messages(messages)
        if dialog[0]["role"] != "system" and self.default_system:
            dialog = [{"role": "system", "content": self.default_system}] + dialog
        start, end = tokenizer.special_id("<|im_start|>"), tokenizer.special_id("<|im_end|>")
        ids: list[int] = []
        for m in dialog:
            ids += [start] + tokenizer.encode(f"{m['role']}\n{m['content']}") + [end] + tokenizer.encode("\n")
        return ids + [start] + tokenizer.encode("assistant\n")


def template_for(kind: str, default_system: str | None = None) -> ChatTemplate:
    if kind in ("llama2", "2"):
        return Llama2ChatTemplate()
    if kind in ("llama3", "3"):
        return Llama3ChatTemplate()
    if kind == "chatml":
        return ChatMLTemplate(default_system)
    raise GenerationError(f"Unknown chat template {kind!r}")
