"""The object the CLI, the GUI and the tests talk to: a loaded model ready to chat.

It ties an executor, a tokenizer and a chat template together, keeps track of
what the KV cache holds (so each chat turn only computes its new tokens), and
turns a conversation into a prompt that fits the context.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

from .chat_template import ChatTemplate, Message, fit_to_context
from .config import ModelConfig
from .errors import GenerationError
from .executor import Executor
from .generation import Completion, KVCacheState, TokenCallback, generate
from .sampling import SamplingSettings


@dataclass(frozen=True)
class GenerationSettings(SamplingSettings):
    """Everything one answer needs: the sampling rules plus when to stop."""

    max_new_tokens: int = 512
    stop_strings: tuple[str, ...] = ()

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(**{f.name: getattr(self, f.name) for f in fields(SamplingSettings)})


@dataclass
class ModelInfo:
    name: str
    version: int | None
    checkpoint: Path | None
    tokenizer: str | None
    template: str | None
    executor: str
    weight_bytes: int = 0
    load_s: float = 0.0
    peak_rss_after_load: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return d


class ChatEngine:
    def __init__(self, executor: Executor, tokenizer, template: ChatTemplate | None, info: ModelInfo):
        self.executor = executor
        self.tokenizer = tokenizer
        self.template = template
        self.info = info
        self.config: ModelConfig = executor.config
        self._cache = KVCacheState()
        stop = {self.config.eos_token_id}
        if tokenizer is not None:
            stop |= set(tokenizer.stop_ids)
        self.stop_ids = frozenset(stop)

    @property
    def context_length(self) -> int:
        return self.executor.max_seq_len

    def complete_ids(self, prompt_ids: Sequence[int], settings: GenerationSettings = GenerationSettings(),
                     on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
                     stop_ids: Sequence[int] | None = None) -> Completion:
        """Continue a raw token sequence (no chat template)."""
        return generate(self.executor, prompt_ids, max_new_tokens=settings.max_new_tokens,
                        sampling=settings.sampling(), stop_ids=self.stop_ids if stop_ids is None else stop_ids,
                        stop_strings=settings.stop_strings, tokenizer=self.tokenizer, on_token=on_token,
                        cancel=cancel, cache=self._cache)

    def complete_text(self, text: str, settings: GenerationSettings = GenerationSettings(),
                      on_token: TokenCallback | None = None, cancel: threading.Event | None = None) -> Completion:
        if not text.strip():
            raise GenerationError("The prompt is empty: type some text.")
        bos = self.tokenizer.bos_id is not None and self.info.version in (2, 3)
        return self.complete_ids(self.tokenizer.encode(text, bos=bos), settings, on_token, cancel)

    def chat_prompt(self, messages: Sequence[Message], max_new_tokens: int) -> tuple[list[Message], list[int]]:
        """The messages that fit (oldest turns dropped, system kept) and their prompt ids."""
        if self.template is None or self.tokenizer is None:
            raise GenerationError("Chat needs a tokenizer and a chat template; this model has none.")
        if not any(m.get("content", "").strip() for m in messages if m.get("role") == "user"):
            raise GenerationError("The message is empty: type something first.")
        reserve = min(max_new_tokens, self.context_length // 4)
        return fit_to_context(messages, self.template, self.tokenizer, self.context_length - reserve)

    def chat(self, messages: Sequence[Message], settings: GenerationSettings = GenerationSettings(),
             on_token: TokenCallback | None = None, cancel: threading.Event | None = None) -> Completion:
        """Answer the last user message of a conversation, streaming through ``on_token``."""
        _, ids = self.chat_prompt(messages, settings.max_new_tokens)
        started = False

        def strip_leading_space(token: int, text: str) -> None:
            # "[/INST] Paris": the space belongs to the template, not to the answer the user sees
            nonlocal started
            if not started:
                text = text.lstrip(" ")
                started = bool(text)
            if on_token:
                on_token(token, text)
        completion = self.complete_ids(ids, settings, strip_leading_space, cancel)
        completion.text = completion.text.lstrip(" ")
        return completion

    def reset_cache(self) -> None:
        self._cache = KVCacheState()
        self.executor.reset()

    def close(self) -> None:
        self.executor.close()
