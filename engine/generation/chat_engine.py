"""The object the CLI, the GUI and the tests talk to: a loaded model ready to chat.

It ties an executor, a tokenizer and a chat template together, keeps track of
what the KV cache holds (so each chat turn only computes its new tokens), and
turns a conversation into a prompt that fits the context. One lock serializes
every request: the executor has a single KV cache, so two overlapping answers
would corrupt each other. A second caller waits its turn (or, with
``wait=False``, gets ``EngineBusy`` at once).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

from engine.backends.executor import Executor
from engine.config import ModelConfig
from engine.errors import Cancelled, EngineBusy, GenerationError
from engine.text.chat_template import ChatTemplate, Message, check_messages

from .context_policy import fit_to_context
from .kv_cache import KVCacheState
from .loop import Completion, TokenCallback, generate
from .sampling import SamplingSettings


@dataclass(frozen=True)
class GenerationSettings(SamplingSettings):
    """Everything one answer needs: the sampling rules plus when to stop. Checked when made."""

    max_new_tokens: int = 512
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 0:
            raise GenerationError(f"max_new_tokens must be a whole number, 0 or more, got {self.max_new_tokens!r}.")
        if isinstance(self.stop_strings, str) or not all(isinstance(t, str) for t in self.stop_strings):
            raise GenerationError("stop_strings must be a list of texts.")

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(**{f.name: getattr(self, f.name) for f in fields(SamplingSettings)})


@dataclass
class ModelInfo:
    name: str
    version: int | None
    checkpoint: Path | None
    tokenizer: str | None
    template: str | None
    executor: str                    # the backend's name: "cpu", "mindspore", ...
    device: str = "CPU"
    weight_format: str = "float32"   # what the matrix products read
    context_length: int = 0
    weight_bytes: int = 0
    memory_estimate: int = 0
    load_s: float = 0.0
    peak_rss_after_load: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        """A short name for APIs and file names: the checkpoint's stem (e.g. llama2_7b), or the built-in's name."""
        if self.version is None or self.checkpoint is None:
            return self.name
        stem = self.checkpoint.stem if self.checkpoint.is_file() else self.checkpoint.name
        return stem.replace(".safetensors", "").replace(".index", "")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        d["model_id"] = self.model_id
        return d


@dataclass
class ChatPrompt:
    """A conversation as it will be sent: the messages that fit, their ids, and how many were left out."""

    messages: list[Message]
    ids: list[int]
    dropped: int                     # oldest messages left out to fit the context


class ChatEngine:
    def __init__(self, executor: Executor, tokenizer, template: ChatTemplate | None, info: ModelInfo):
        self.executor = executor
        self.tokenizer = tokenizer
        self.template = template
        self.info = info
        self.config: ModelConfig = executor.config
        self._cache = KVCacheState()
        self._lock = threading.Lock()
        stop = {self.config.eos_token_id}
        if tokenizer is not None:
            stop |= set(tokenizer.stop_ids)
        self.stop_ids = frozenset(stop)

    @property
    def context_length(self) -> int:
        return self.executor.max_seq_len

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextmanager
    def _turn(self, wait: bool, cancel: threading.Event | None = None):
        """Hold the engine for one request; a waiting caller can still be cancelled."""
        while not self._lock.acquire(timeout=0.05 if wait else 0):
            if not wait:
                raise EngineBusy("The model is busy with another answer; try again when it has finished.")
            if cancel is not None and cancel.is_set():
                raise Cancelled("The request was cancelled while waiting for the model.")
        try:
            yield
        finally:
            self._lock.release()

    def complete_ids(self, prompt_ids: Sequence[int], settings: GenerationSettings = GenerationSettings(),
                     on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
                     stop_ids: Sequence[int] | None = None, wait: bool = True) -> Completion:
        """Continue a raw token sequence (no chat template)."""
        with self._turn(wait, cancel):
            return generate(self.executor, prompt_ids, max_new_tokens=settings.max_new_tokens,
                            sampling=settings.sampling(), stop_ids=self.stop_ids if stop_ids is None else stop_ids,
                            stop_strings=settings.stop_strings, tokenizer=self.tokenizer, on_token=on_token,
                            cancel=cancel, cache=self._cache)

    def complete_text(self, text: str, settings: GenerationSettings = GenerationSettings(),
                      on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
                      wait: bool = True) -> Completion:
        if not isinstance(text, str):
            raise GenerationError(f"The prompt must be text (str), got {type(text).__name__}.")
        if not text.strip():
            raise GenerationError("The prompt is empty: type some text.")
        bos = self.tokenizer.bos_id is not None and self.info.version in (2, 3)
        return self.complete_ids(self.tokenizer.encode(text, bos=bos), settings, on_token, cancel, wait=wait)

    def count_tokens(self, text: str, bos: bool = False) -> int:
        """Tokens of ``text``; ``bos=True`` counts it as ``complete_text`` sends it (with the start token)."""
        add = bos and self.tokenizer.bos_id is not None and self.info.version in (2, 3)
        return len(self.tokenizer.encode(text, bos=add))

    def prepare_chat(self, messages: Sequence[Message], max_new_tokens: int = 512) -> ChatPrompt:
        """The messages that fit (oldest turns dropped, system kept), their prompt ids, and what was dropped."""
        if self.template is None or self.tokenizer is None:
            raise GenerationError("Chat needs a tokenizer and a chat template; this model has none.")
        messages = check_messages(messages)
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            raise GenerationError("The message is empty: type something first.")
        reserve = min(max_new_tokens, self.context_length // 4)
        kept, ids = fit_to_context(messages, self.template, self.tokenizer, self.context_length - reserve)
        return ChatPrompt(kept, ids, len(messages) - len(kept))

    def chat(self, messages: Sequence[Message] | ChatPrompt, settings: GenerationSettings = GenerationSettings(),
             on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
             wait: bool = True) -> Completion:
        """Answer the last user message of a conversation (or a ``prepare_chat`` result), streaming."""
        prompt = messages if isinstance(messages, ChatPrompt) else self.prepare_chat(messages, settings.max_new_tokens)
        started = False

        def strip_leading_space(token: int, text: str) -> None:
            # "[/INST] Paris": the space belongs to the template, not to the answer the user sees
            nonlocal started
            if not started:
                text = text.lstrip(" ")
                started = bool(text)
            if on_token:
                on_token(token, text)
        completion = self.complete_ids(prompt.ids, settings, strip_leading_space, cancel, wait=wait)
        completion.text = completion.text.lstrip(" ")
        completion.dropped_messages = prompt.dropped
        return completion

    def reset_cache(self) -> None:
        with self._turn(True):
            self._cache = KVCacheState()
            self.executor.reset()

    def close(self) -> None:
        with self._turn(True):
            self.executor.close()
