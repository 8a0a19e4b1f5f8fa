"""OpenAI's response objects for one finished or streaming answer: chat and raw-text completions.

One ``AnswerShape`` per endpoint knows the object names and where the text
goes (``message``/``delta`` for chat, ``text`` for completions); both share
the id, the timestamps, ``usage`` and the finish reasons.
"""

from __future__ import annotations

import json
import time
import uuid

from engine import Completion

# ours -> OpenAI's: a stop string counts as "stop", a full context as "length"
FINISH_REASONS = {"stop": "stop", "stop_string": "stop", "length": "length", "context": "length",
                  "cancelled": "stop"}
SSE_DONE = b"data: [DONE]\n\n"


def sse(payload: dict) -> bytes:
    """One server-sent event carrying a JSON object."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def usage(completion: Completion) -> dict:
    """OpenAI's counts; ``cached_tokens``: prompt tokens taken from the cache rather than computed."""
    prompt, generated = completion.stats.prompt_tokens, completion.stats.generated_tokens
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated,
            "prompt_tokens_details": {"cached_tokens": completion.stats.cached_tokens}}


class AnswerShape:
    """The envelope shared by every object of one answer (same id and creation time)."""

    prefix = ""
    whole_object = ""
    chunk_object = ""

    def __init__(self, model: str):
        self.id = f"{self.prefix}-{uuid.uuid4().hex[:24]}"
        self.model = model
        self.created = int(time.time())
        self.stream_usage = False   # stream_options.include_usage: every chunk has "usage", null but the last

    def _envelope(self, obj: str, choices: list) -> dict:
        body = {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices}
        if self.stream_usage and obj == self.chunk_object:
            body["usage"] = None    # as OpenAI's streams: clients may read the field in every chunk
        return body

    def whole(self, completion: Completion) -> dict:
        body = self._envelope(self.whole_object, [self._choice(completion.text,
                                                               FINISH_REASONS[completion.stats.finish_reason])])
        body["usage"] = usage(completion)
        return body

    def opening_chunks(self) -> list[dict]:
        return []

    def chunk(self, text: str, finish_reason: str | None = None) -> dict:
        return self._envelope(self.chunk_object, [self._delta(text, finish_reason)])

    def final_chunk(self, completion: Completion) -> dict:
        return self._envelope(self.chunk_object, [self._delta("", FINISH_REASONS[completion.stats.finish_reason])])

    def usage_chunk(self, completion: Completion) -> dict:
        """Sent last when the client asked for ``stream_options.include_usage``: no choices, only counts."""
        body = self._envelope(self.chunk_object, [])
        body["usage"] = usage(completion)
        return body

    def _choice(self, text: str, finish_reason: str) -> dict:
        raise NotImplementedError

    def _delta(self, text: str, finish_reason: str | None) -> dict:
        raise NotImplementedError


class ChatShape(AnswerShape):
    prefix = "chatcmpl"
    whole_object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def opening_chunks(self) -> list[dict]:
        # OpenAI's streams open with the role, before any text
        return [self._envelope(self.chunk_object, [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                    "logprobs": None, "finish_reason": None}])]

    def _choice(self, text: str, finish_reason: str) -> dict:
        return {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None, "finish_reason": finish_reason}

    def _delta(self, text: str, finish_reason: str | None) -> dict:
        return {"index": 0, "delta": {"content": text} if text else {}, "logprobs": None,
                "finish_reason": finish_reason}


class TextShape(AnswerShape):
    prefix = "cmpl"
    whole_object = "text_completion"
    chunk_object = "text_completion"

    def _choice(self, text: str, finish_reason: str) -> dict:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def _delta(self, text: str, finish_reason: str | None) -> dict:
        return self._choice(text, finish_reason)


def shape_for(kind: str, model: str) -> AnswerShape:
    return ChatShape(model) if kind == "chat" else TextShape(model)
