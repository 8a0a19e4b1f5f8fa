"""Chat prompt formats, built from token ids.

Special tokens are inserted by id; message text is encoded as plain text, so a
user who types ``<|eot_id|>`` gets those characters, not an end of turn. The
LLaMA2 rules follow Meta's ``chat_completion`` to the token (system prompt
folded into the first user turn, each finished exchange wrapped in BOS/EOS,
special tags refused); LLaMA3 follows Meta's ``ChatFormat``; ChatML is what
SmolLM2-Instruct, the built-in model, was trained with. Base models, which were
trained on no chat format, get a plain "User: / Assistant:" transcript.

Each template gives the prompt in pieces (``PromptParts``: each message encoded
once), so the context policy can leave out old turns without encoding anything
again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Sequence

from engine.errors import GenerationError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Each message a mapping with a known role and text content; the last one the user's."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise GenerationError(f"A conversation is a list of messages ({{'role': ..., 'content': ...}}), "
                              f"got {type(messages).__name__}.",
                              code="conversation_not_a_list", params={"type": type(messages).__name__})
    if not messages:
        raise GenerationError("The conversation is empty: type a message first.",
                              code="conversation_empty")
    for n, m in enumerate(messages, 1):
        if not isinstance(m, Mapping):
            raise GenerationError(f"Message {n} must be a mapping with 'role' and 'content', got {type(m).__name__}.",
                                  code="message_not_a_mapping", params={"number": n, "type": type(m).__name__})
        if m.get("role") not in ("system", "user", "assistant"):
            raise GenerationError(f"Message {n} has an unknown role {m.get('role')!r}: use system, user or assistant.",
                                  code="message_unknown_role", params={"number": n, "role": m.get("role")})
        if not isinstance(m.get("content"), str):
            raise GenerationError(f"Message {n} ({m['role']}) needs text content, got "
                                  f"{type(m.get('content')).__name__}.",
                                  code="message_not_text",
                                  params={"number": n, "role": m["role"], "type": type(m.get("content")).__name__})
    if messages[-1]["role"] != "user":
        raise GenerationError("The last message must be the user's: there is nothing to answer.",
                              code="last_message_not_user")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


@dataclass
class PromptParts:
    """A conversation's prompt in pieces, each encoded once, so dropping old turns re-encodes nothing.

    ``ids(first)`` is the prompt keeping exchanges ``first``.. (an exchange: a user message and the
    replies after it); the system prompt always stays. ``lead(i)`` is exchange i's ids when it comes
    first (LLaMA2 folds the system prompt into the first user message); for the others it is the
    exchange itself.
    """

    head: list[int]                              # before the first exchange: start token, system prompt
    exchanges: list[list[int]]
    tail: list[int]                              # after the last one: where the answer starts
    starts: list[int]                            # index (in the messages) of each exchange's first message
    messages: list[Message]
    asked: list[int]                             # tokens of each exchange when it was asked (its question alone)
    lead: Callable[[int], list[int]] | None = None

    def first_ids(self, first: int) -> list[int]:
        return self.lead(first) if self.lead is not None else self.exchanges[first]

    def ids(self, first: int = 0) -> list[int]:
        out = list(self.head) + self.first_ids(first)
        for piece in self.exchanges[first + 1:]:
            out += piece
        return out + self.tail

    def kept_messages(self, first: int) -> list[Message]:
        system = self.messages[:1] if self.messages and self.messages[0]["role"] == "system" else []
        return system + self.messages[self.starts[first]:]


def split_exchanges(dialog: Sequence[Message]) -> tuple[list[Message], list[list[Message]], list[int]]:
    """(system messages, exchanges, index of each exchange's first message): a new exchange at each user
    message; anything before the first one (an assistant's greeting) is an exchange of its own."""
    system = list(dialog[:1]) if dialog and dialog[0]["role"] == "system" else []
    groups: list[list[Message]] = []
    starts: list[int] = []
    for i, m in enumerate(dialog[len(system):], len(system)):
        if m["role"] == "user" or not groups:
            groups.append([])
            starts.append(i)
        groups[-1].append(m)
    return system, groups, starts


@lru_cache(maxsize=64)
def _constant(tokenizer, text: str) -> tuple[int, ...]:
    """A template's fixed text (a role name, a line break), encoded once per tokenizer."""
    return tuple(tokenizer.encode(text))


def continuation(tokenizer, text: str) -> list[int]:
    """Ids of ``text`` as it tokenizes after a line break: SentencePiece would otherwise start it with a
    word-start space, which a plain transcript never has there."""
    lead = list(_constant(tokenizer, "\n"))
    ids = tokenizer.encode("\n" + text)
    return ids[len(lead):] if ids[:len(lead)] == lead else tokenizer.encode(text)


class ChatTemplate(abc.ABC):
    name = "template"
    kind = "chat"                                # "chat": the model was trained on this format; "base": a transcript
    default_system: str | None = None
    stop_strings: tuple[str, ...] = ()           # where an answer ends besides the stop tokens

    def render(self, messages, tokenizer) -> list[int]:
        """Token ids of the whole conversation, ending where the assistant's answer starts."""
        return self.parts(messages, tokenizer).ids(0)

    def parts(self, messages: Sequence[Message], tokenizer) -> PromptParts:
        """The conversation in pieces (see ``PromptParts``); each message is encoded once."""
        dialog = check_messages(messages)
        system, groups, starts = split_exchanges(dialog)
        encoded = [[self.message_ids(m, tokenizer) for m in group] for group in groups]
        exchanges = [[i for ids in group for i in ids] for group in encoded]
        return PromptParts(self.head_ids(system, tokenizer), exchanges, self.tail_ids(tokenizer), starts, dialog,
                           [len(group[0]) for group in encoded])

    def head_ids(self, system: list[Message], tokenizer) -> list[int]:
        return [i for m in system for i in self.message_ids(m, tokenizer)]

    def message_ids(self, message: Message, tokenizer) -> list[int]:
        raise NotImplementedError

    def tail_ids(self, tokenizer) -> list[int]:
        return []


class Llama2ChatTemplate(ChatTemplate):
    """``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>``..."""

    name = "llama2-chat"
    B_INST, E_INST = "[INST]", "[/INST]"
    B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
    SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")

    def parts(self, messages, tokenizer) -> PromptParts:
        dialog = check_messages(messages)
        # Meta refuses its markers in what people type; an answer the model wrote may quote them
        # and is encoded as plain text, so an old answer can never block the conversation.
        if any(tag in m["content"] for tag in self.SPECIAL_TAGS for m in dialog if m["role"] != "assistant"):
            raise GenerationError("LLaMA2-chat does not allow the text [INST], [/INST], <<SYS>> or <</SYS>> "
                                  "in a user or system message (they are its prompt markers). Rephrase without them.",
                                  code="llama2_markers_in_message")
        system, groups, starts = split_exchanges(dialog)
        if dialog[0]["role"] == "system" and len(dialog) < 2:
            raise GenerationError("A system prompt needs a user message after it.", code="system_prompt_alone")
        roles = [m["role"] for m in dialog[len(system):]]
        if roles[0::2] != ["user"] * len(roles[0::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
            raise GenerationError("LLaMA2-chat needs user and assistant messages to alternate, starting with user.",
                                  code="llama2_roles_alternate")

        def exchange(group: list[Message], prefix: str = "", asked: bool = False) -> list[int]:
            question = (prefix + group[0]["content"]).strip()
            if len(group) == 1 or asked:     # the question being asked
                return tokenizer.encode(f"{self.B_INST} {question} {self.E_INST}", bos=True)
            answer = group[1]["content"].strip()
            return tokenizer.encode(f"{self.B_INST} {question} {self.E_INST} {answer} ", bos=True) + [tokenizer.eos_id]

        exchanges = [exchange(group) for group in groups]
        asked = [len(exchange(group, asked=True)) for group in groups[:-1]] + [len(exchanges[-1])]
        lead = None
        if system:
            folded = self.B_SYS + system[0]["content"] + self.E_SYS
            lead = lambda i: exchange(groups[i], folded)  # noqa: E731 - encoded only for the exchange kept first
        return PromptParts([], exchanges, [], starts, dialog, asked, lead)


class Llama3ChatTemplate(ChatTemplate):
    """``<|begin_of_text|>`` then ``<|start_header_id|>role<|end_header_id|>\\n\\ntext<|eot_id|>`` per message."""

    name = "llama3-instruct"

    def _header(self, role: str, tok) -> list[int]:
        return ([tok.special_id("<|start_header_id|>")] + list(_constant(tok, role))
                + [tok.special_id("<|end_header_id|>")] + list(_constant(tok, "\n\n")))

    def head_ids(self, system, tokenizer) -> list[int]:
        return [tokenizer.special_id("<|begin_of_text|>")] + super().head_ids(system, tokenizer)

    def message_ids(self, message, tokenizer) -> list[int]:
        return (self._header(message["role"], tokenizer) + tokenizer.encode(message["content"].strip())
                + [tokenizer.special_id("<|eot_id|>")])

    def tail_ids(self, tokenizer) -> list[int]:
        return self._header("assistant", tokenizer)


class ChatMLTemplate(ChatTemplate):
    """``<|im_start|>role\\ntext<|im_end|>\\n`` per message (SmolLM2-Instruct)."""

    name = "chatml"

    def __init__(self, default_system: str | None = None):
        self.default_system = default_system

    def head_ids(self, system, tokenizer) -> list[int]:
        if not system and self.default_system:
            system = [{"role": "system", "content": self.default_system}]
        return super().head_ids(system, tokenizer)

    def message_ids(self, message, tokenizer) -> list[int]:
        start, end = tokenizer.special_id("<|im_start|>"), tokenizer.special_id("<|im_end|>")
        return ([start] + tokenizer.encode(f"{message['role']}\n{message['content']}") + [end]
                + list(_constant(tokenizer, "\n")))

    def tail_ids(self, tokenizer) -> list[int]:
        return [tokenizer.special_id("<|im_start|>")] + list(_constant(tokenizer, "assistant\n"))


class BaseTranscriptTemplate(ChatTemplate):
    """A plain transcript for base (not chat-tuned) models, which only continue text::

        {system}

        User: {question}
        Assistant: {answer}
        User: {question}
        Assistant:

    A base model would go on to write the next "User:" turn itself: ``stop_strings`` end the answer
    there, and where a chat template's markers would start, as a chat model's answer would end.
    """

    name = "base"
    kind = "base"
    stop_strings = ("\nUser:", "[INST]", "<|start_header_id|>")

    def head_ids(self, system, tokenizer) -> list[int]:
        ids = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
        if system and system[0]["content"].strip():
            ids += continuation(tokenizer, system[0]["content"].strip() + "\n\n")
        return ids

    def parts(self, messages, tokenizer) -> PromptParts:
        dialog = check_messages(messages)
        system, groups, starts = split_exchanges(dialog)
        exchanges, asked = [], []
        for n, group in enumerate(groups):
            lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content'].strip()}\n" for m in group]
            if n == len(groups) - 1:
                lines.append("Assistant:")
            exchanges.append(continuation(tokenizer, "".join(lines)))
            asked.append(len(exchanges[-1]) if n == len(groups) - 1 else
                         len(continuation(tokenizer, lines[0] + "Assistant:")))
        return PromptParts(self.head_ids(system, tokenizer), exchanges, [], starts, dialog, asked)


TEMPLATE_CHOICES = ("auto", "llama2", "llama3", "chatml", "base")


def template_for(kind: str, default_system: str | None = None) -> ChatTemplate:
    if kind in ("llama2", "2"):
        return Llama2ChatTemplate()
    if kind in ("llama3", "3"):
        return Llama3ChatTemplate()
    if kind == "chatml":
        return ChatMLTemplate(default_system)
    if kind == "base":
        return BaseTranscriptTemplate()
    raise GenerationError(f"Unknown chat template {kind!r}: use one of {', '.join(TEMPLATE_CHOICES)}.",
                          code="unknown_chat_template", params={"kind": kind, "choices": ", ".join(TEMPLATE_CHOICES)})
