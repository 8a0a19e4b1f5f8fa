"""The object the CLI, the GUI and the tests talk to: a loaded model ready to chat.

It ties an executor, a tokenizer and a chat template together, keeps track of
what the KV cache holds (so each chat turn only computes its new tokens), and
turns a conversation into a prompt that fits the context. One lock serializes
every request: the executor has a single KV cache, so two overlapping answers
would corrupt each other. A second caller waits its turn (or, with
``wait=False``, gets ``EngineBusy`` at once).

A request may name a state file (``state_file``): its saved rows are read back
when they cover more of the prompt than the cache does, and after the answer the
new rows are appended to it in the background (``prompt_states``). The API
server's requests may also keep recent prompts' rows in memory (``memory_slots``).

An executor with several cache slots (``--parallel``) serves several answers at
once instead: each request takes a slot (``stream_slots``) and the slots' next
tokens are computed together (``step_scheduler``); the lock is then not used.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

from engine.backends.executor import Executor
from engine.config import ModelConfig
from engine.errors import Cancelled, EngineBusy, GenerationError
from engine.text.chat_template import ChatTemplate, Message, check_messages

from .context_policy import first_kept_exchange
from .kv_cache import KVCacheState
from .lookup import MODES as LOOKUP_MODES
from .lookup import LookupDrafter, StepCost
from .loop import Completion, PrefillCallback, TokenCallback, generate
from .prompt_cache import PromptStateFile, StateLayout
from .prompt_reuse import MemorySlots, StateOnDisk
from .prompt_states import StateWriter, save_cache
from .sampling import SamplingSettings
from .stream_slots import StreamSlots


@dataclass(frozen=True)
class GenerationSettings(SamplingSettings):
    """Everything one answer needs: the sampling rules plus when to stop. Checked when made."""

    max_new_tokens: int = 512
    stop_strings: tuple[str, ...] = ()
    lookup: str = "auto"             # guesses from the conversation checked alongside each token (``lookup``)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 0:
            raise GenerationError(f"max_new_tokens must be a whole number, 0 or more, got {self.max_new_tokens!r}.",
                                  code="max_new_tokens_invalid", params={"value": self.max_new_tokens})
        if isinstance(self.stop_strings, str) or not all(isinstance(t, str) for t in self.stop_strings):
            raise GenerationError("stop_strings must be a list of texts.",
                                  code="stop_strings_invalid")
        if self.lookup not in LOOKUP_MODES:
            raise GenerationError(f"lookup must be one of {', '.join(LOOKUP_MODES)}, got {self.lookup!r}.",
                                  code="lookup_invalid", params={"value": self.lookup, "modes": ", ".join(LOOKUP_MODES)})

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
    kind: str = "chat"               # "chat" (a chat template) or "base" (a plain transcript: a base model)
    state_identity: str = ""         # what a saved conversation state must match (prompt_cache); "": none

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
    stop_strings: tuple[str, ...] = ()  # the template's own (a base model's next "User:" turn)


class ChatEngine:
    def __init__(self, executor: Executor, tokenizer, template: ChatTemplate | None, info: ModelInfo):
        self.executor = executor
        self.tokenizer = tokenizer
        self.template = template
        self.info = info
        self.config: ModelConfig = executor.config
        self._cache = KVCacheState()
        self._lock = threading.Lock()
        self.context_shift = True            # move kept turns' rows when old turns are dropped (else recompute)
        self.memory_slots = MemorySlots()    # off until a front end (the API server) turns it on
        self._writer = StateWriter()
        self.step_cost = StepCost()          # lookup's measure of wider decode steps on this model and machine
        stop = {self.config.eos_token_id}
        if tokenizer is not None:
            stop |= set(tokenizer.stop_ids)
        self.stop_ids = frozenset(stop)
        # several answers at once, each in its own cache slot, when the executor has slots (cpu --parallel)
        self.streams = StreamSlots(executor) if getattr(executor, "slots", 1) > 1 else None

    @property
    def parallel(self) -> int:
        """How many answers can be computed at once."""
        return self.streams.count if self.streams is not None else 1

    @property
    def context_length(self) -> int:
        return self.executor.max_seq_len

    @property
    def busy(self) -> bool:
        """Whether a request now would wait (every slot, or the one cache, taken)."""
        return self.streams.full if self.streams is not None else self._lock.locked()

    @contextmanager
    def _turn(self, wait: bool, cancel: threading.Event | None = None):
        """Hold the engine for one request; a waiting caller can still be cancelled."""
        while not self._lock.acquire(timeout=0.05 if wait else 0):
            if not wait:
                raise EngineBusy("The model is busy with another answer; try again when it has finished.",
                                 code="engine_busy")
            if cancel is not None and cancel.is_set():
                raise Cancelled("The request was cancelled while waiting for the model.",
                                code="request_cancelled")
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _stream(self, prompt_ids: Sequence[int], wait: bool, cancel: threading.Event | None):
        """The executor and cache state one answer runs on: a free slot's, or the engine's own under its lock."""
        if self.streams is not None:
            with self.streams.stream(prompt_ids, wait, cancel) as taken:
                yield taken
        else:
            with self._turn(wait, cancel):
                yield self.executor, self._cache

    def complete_ids(self, prompt_ids: Sequence[int], settings: GenerationSettings = GenerationSettings(),
                     on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
                     stop_ids: Sequence[int] | None = None, wait: bool = True, *,
                     state_file: str | Path | None = None, state_budget: int | None = None,
                     on_prefill: PrefillCallback | None = None, use_memory_slots: bool = False) -> Completion:
        """Continue a raw token sequence (no chat template).

        ``state_file``: a conversation's saved state, read back when it helps and brought up to date after
        the answer (in the background; ``flush_states`` waits for it), keeping its folder's states within
        ``state_budget`` bytes. ``on_prefill(done, total, restored)`` follows the prompt's computation.
        """
        with self._stream(prompt_ids, wait, cancel) as (executor, cache):
            state = self._state(state_file)
            sources = ([self.memory_slots] if use_memory_slots and self.memory_slots.enabled else []) \
                + ([StateOnDisk(state, self._writer)] if state is not None else [])
            completion = generate(
                executor, prompt_ids, max_new_tokens=settings.max_new_tokens, sampling=settings.sampling(),
                stop_ids=self.stop_ids if stop_ids is None else stop_ids, stop_strings=settings.stop_strings,
                tokenizer=self.tokenizer, on_token=on_token, cancel=cancel, cache=cache, sources=sources,
                on_prefill=on_prefill, context_shift=self.context_shift,
                lookup=LookupDrafter(settings.lookup, self.step_cost) if settings.lookup != "off" else None)
            if state is not None:
                save_cache(executor, cache.valid_prefix(), state, self._writer, state_budget)
            return completion

    def _state(self, path: str | Path | None) -> PromptStateFile | None:
        if path is None or not self.can_save_state:
            return None
        cfg = self.config
        layout = StateLayout(cfg.num_layers, cfg.kv_heads, cfg.head_dim, self.executor.kv_element_type)
        return PromptStateFile(path, self.info.state_identity, layout)

    @property
    def can_save_state(self) -> bool:
        """Whether conversation states can be saved and read back with this backend and model."""
        return self.executor.supports_kv_rows and bool(self.info.state_identity)

    def flush_states(self, timeout: float | None = None) -> bool:
        """Wait until every queued state save is on disk; False if ``timeout`` ran out first."""
        return self._writer.wait(timeout=timeout)

    def complete_text(self, text: str, settings: GenerationSettings = GenerationSettings(),
                      on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
                      wait: bool = True, **state) -> Completion:
        """Continue ``text`` (no chat template); ``state`` as for ``chat``."""
        return self.complete_ids(self.text_ids(text), settings, on_token, cancel, wait=wait, **state)

    def text_ids(self, text: str) -> list[int]:
        """The ids ``complete_text`` sends for ``text`` (with the start token for LLaMA2/3)."""
        if not isinstance(text, str):
            raise GenerationError(f"The prompt must be text (str), got {type(text).__name__}.",
                                  code="prompt_not_text", params={"type": type(text).__name__})
        if not text.strip():
            raise GenerationError("The prompt is empty: type some text.",
                                  code="prompt_empty")
        bos = self.tokenizer.bos_id is not None and self.info.version in (2, 3)
        return self.tokenizer.encode(text, bos=bos)

    def keep_prompts_in_memory(self, slots: int = 4, budget_bytes: int | None = None) -> None:
        """Keep up to ``slots`` recent prompts' KV rows in RAM for requests with ``use_memory_slots`` (the API
        server's clients take turns on one model); by default within half the KV cache's own size. 0 turns it off."""
        if budget_bytes is None:
            cfg, itemsize = self.config, 2 if self.executor.kv_element_type == "float16" else 4
            budget_bytes = cfg.num_layers * 2 * cfg.kv_heads * cfg.head_dim * self.context_length * itemsize // 2
        self.memory_slots = MemorySlots(slots if self.executor.supports_kv_rows else 0, budget_bytes)

    def count_tokens(self, text: str, bos: bool = False) -> int:
        """Tokens of ``text``; ``bos=True`` counts it as ``complete_text`` sends it (with the start token)."""
        add = bos and self.tokenizer.bos_id is not None and self.info.version in (2, 3)
        return len(self.tokenizer.encode(text, bos=add))

    def prepare_chat(self, messages: Sequence[Message], max_new_tokens: int = 512) -> ChatPrompt:
        """The messages that fit (oldest turns dropped, system kept), their prompt ids, and what was dropped."""
        if self.template is None or self.tokenizer is None:
            raise GenerationError("Chat needs a tokenizer and a chat template; this model has none.",
                                  code="chat_unsupported")
        messages = check_messages(messages)
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            raise GenerationError("The message is empty: type something first.",
                                  code="message_empty")
        reserve = min(max_new_tokens, self.context_length // 4)
        parts = self.template.parts(messages, self.tokenizer)
        first = first_kept_exchange(parts, self.context_length - reserve)
        kept = parts.kept_messages(first)
        return ChatPrompt(kept, parts.ids(first), len(messages) - len(kept), tuple(self.template.stop_strings))

    def chat(self, messages: Sequence[Message] | ChatPrompt, settings: GenerationSettings = GenerationSettings(),
             on_token: TokenCallback | None = None, cancel: threading.Event | None = None,
             wait: bool = True, answer_start: str = "", **state) -> Completion:
        """Answer the last user message of a conversation (or a ``prepare_chat`` result), streaming.

        ``answer_start``: the beginning of the answer, already written (a stopped answer the user wants
        continued); the model goes on from its end, and the completion's text is what it adds.
        ``state`` takes ``complete_ids``' keywords: ``state_file``, ``state_budget``, ``on_prefill``,
        ``use_memory_slots``.
        """
        start_ids = self.tokenizer.encode(answer_start, bos=False) if answer_start and self.tokenizer else []
        prompt = messages if isinstance(messages, ChatPrompt) else self.prepare_chat(
            messages, settings.max_new_tokens + len(start_ids))
        if start_ids:
            prompt = replace(prompt, ids=prompt.ids + start_ids)
        started = bool(start_ids)

        def strip_leading_space(token: int, text: str) -> None:
            # "[/INST] Paris": the space belongs to the template, not to the answer the user sees
            nonlocal started
            if not started:
                text = text.lstrip(" ")
                started = bool(text)
            if on_token:
                on_token(token, text)
        if prompt.stop_strings:
            settings = replace(settings, stop_strings=tuple(settings.stop_strings) + prompt.stop_strings)
        completion = self.complete_ids(prompt.ids, settings, strip_leading_space, cancel, wait=wait, **state)
        if not start_ids:
            completion.text = completion.text.lstrip(" ")
        completion.dropped_messages = prompt.dropped
        return completion

    def reset_cache(self) -> None:
        with self._turn(True):
            self._cache = KVCacheState()
            self.memory_slots.clear()
            if self.streams is not None:
                self.streams.reset()
            self.executor.reset()

    def close(self) -> None:
        self.flush_states(timeout=60)
        with self._turn(True):
            self.memory_slots.clear()
            if self.streams is not None:
                self.streams.close()
            self.executor.close()
