"""OpenAI request bodies turned into what the engine takes: messages or text, and GenerationSettings.

Fields this server does not know are ignored, as OpenAI clients send many.
Fields it knows but cannot honour (``n`` above 1, ``logprobs``, ``echo``...)
are refused with a 400 that says so, rather than silently giving something
else. How OpenAI's sampling fields map onto ours is written in the README
("what is approximate").
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import GenerationError, GenerationSettings
from engine.generation.lookup import MODES as LOOKUP_MODES

from . import fields
from .errors import invalid, unsupported

DEFAULT_MAX_TOKENS = 512
MAX_STOPS = 4                        # as OpenAI's API
MAX_STOP_CHARS = 200
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TEXT_PART_TYPES = ("text", "input_text")


@dataclass(frozen=True)
class GenerationRequest:
    """One request, checked: what to generate from, how, and how to answer."""

    kind: str                        # "chat" (engine.chat) or "text" (engine.complete_text)
    prompt: list[dict] | str         # chat messages, or the raw text to continue
    settings: GenerationSettings
    model: str | None                # the model the client named (None: whatever is loaded)
    stream: bool
    include_usage: bool              # stream_options.include_usage: a last chunk with the token counts


def parse_chat(body: dict, lookup: str = "auto") -> GenerationRequest:
    """``lookup``: the server's choice for requests that do not make their own (``lookup`` field)."""
    _refuse_unsupported(body)
    if fields.boolean(body, "logprobs") or body.get("top_logprobs"):
        raise unsupported("This server does not return log-probabilities: leave 'logprobs' out.", "logprobs")
    return _request("chat", chat_messages(body.get("messages")), body, lookup)


def parse_completion(body: dict, lookup: str = "auto") -> GenerationRequest:
    _refuse_unsupported(body)
    if body.get("logprobs"):
        raise unsupported("This server does not return log-probabilities: leave 'logprobs' out.", "logprobs")
    if fields.boolean(body, "echo"):
        raise unsupported("This server does not echo the prompt: leave 'echo' out.", "echo")
    if fields.text(body, "suffix"):
        raise unsupported("This server cannot fill in text before a suffix: leave 'suffix' out.", "suffix")
    if (fields.integer(body, "best_of", 1) or 1) > 1:
        raise unsupported("'best_of' can only be 1 here.", "best_of")
    return _request("text", completion_prompt(body.get("prompt")), body, lookup)


def _refuse_unsupported(body: dict) -> None:
    if (fields.integer(body, "n", 1) or 1) > 1:
        raise unsupported("This server gives one answer per request: 'n' can only be 1.", "n")


def _request(kind: str, prompt, body: dict, lookup: str) -> GenerationRequest:
    stream = fields.boolean(body, "stream")
    options = fields.mapping(body, "stream_options")
    include_usage = stream and fields.boolean(options, "include_usage")
    return GenerationRequest(kind, prompt, generation_settings(body, lookup), fields.text(body, "model"), stream,
                             include_usage)


def lookup_mode(body: dict, default: str) -> str:
    """Our extension ``lookup``: "auto", "on" or "off" (guesses from the conversation checked with each token)."""
    mode = fields.text(body, "lookup")
    if mode is None:
        return default
    if mode not in LOOKUP_MODES:
        raise invalid(f"'lookup' must be one of {', '.join(map(repr, LOOKUP_MODES))}, got {mode!r}.", "lookup")
    return mode


def chat_messages(value) -> list[dict]:
    """OpenAI messages as the engine's: known roles, text content ("developer" is a system message)."""
    if not isinstance(value, list) or not value:
        raise invalid("'messages' must be a non-empty list of {\"role\", \"content\"} objects.", "messages",
                      code="invalid_type")
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object with 'role' and 'content'.", where, code="invalid_type")
        role = message.get("role")
        if role not in ROLES:
            shown = role if isinstance(role, str) else type(role).__name__
            raise invalid(f"{where} has the role {shown!r}; this server takes system, developer, user and "
                          "assistant messages (tool calls are not supported).", f"{where}.role")
        messages.append({"role": ROLES[role], "content": message_text(message.get("content"), f"{where}.content")})
    return messages


def message_text(content, where: str) -> str:
    """A message's text: a string, or the text parts of a list of content parts joined by newlines."""
    if content is None:
        return ""                    # an assistant turn that only called tools
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where} must be a text or a list of content parts.", where, code="invalid_type")
    pieces = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"{where}[{j}] must be an object like {{\"type\": \"text\", \"text\": \"...\"}}.",
                          f"{where}[{j}]", code="invalid_type")
        if part["type"] not in TEXT_PART_TYPES:
            raise unsupported(f"{where}[{j}] is a {part['type']!r} part, but this model reads text only.",
                              f"{where}[{j}]")
        if not isinstance(part.get("text"), str):
            raise invalid(f"{where}[{j}].text must be a text.", f"{where}[{j}].text", code="invalid_type")
        pieces.append(part["text"])
    return "\n".join(pieces)


def completion_prompt(value) -> str:
    """The text to continue: a string, or a list holding exactly one string."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        raise unsupported("This server continues one prompt per request: send a single text.", "prompt")
    if not isinstance(value, str):
        raise invalid("'prompt' must be a text (token-id prompts are not supported).", "prompt",
                      code="invalid_type")
    return value


def repetition_penalty(body: dict, greedy: bool) -> float:
    """Ours from OpenAI's additive penalties: 1 + (presence + frequency) / 10, at least 0.5 (approximate)."""
    explicit = fields.number(body, "repetition_penalty", 0.01, 10.0)   # llama.cpp/vLLM spelling, if sent
    if explicit is not None:
        return explicit
    presence = fields.number(body, "presence_penalty", -2.0, 2.0)
    frequency = fields.number(body, "frequency_penalty", -2.0, 2.0)
    if presence is None and frequency is None:
        return 1.0 if greedy else 1.1   # the engine's usual choice, as on the command line
    return max(0.5, 1.0 + ((presence or 0.0) + (frequency or 0.0)) / 10.0)


def stop_strings(body: dict) -> tuple[str, ...]:
    """OpenAI's ``stop``: up to 4 texts, each of a sensible length (every one is looked for after every token)."""
    stops = fields.texts(body, "stop")
    if len(stops) > MAX_STOPS:
        raise invalid(f"'stop' takes at most {MAX_STOPS} texts, got {len(stops)}.", "stop")
    longest = max(stops, key=len, default="")
    if len(longest) > MAX_STOP_CHARS:
        raise invalid(f"Each 'stop' text may have at most {MAX_STOP_CHARS} characters; one has {len(longest)}.", "stop")
    return tuple(stops)


def generation_settings(body: dict, lookup: str = "auto") -> GenerationSettings:
    max_tokens = fields.integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = fields.integer(body, "max_tokens", 1)
    temperature = fields.number(body, "temperature", 0.0, 2.0)
    top_p = fields.number(body, "top_p", 0.0, 1.0)
    top_k = fields.integer(body, "top_k")
    if top_k is not None and top_k < 0:
        top_k = 0                        # vLLM's clients send -1 for "off"; ours is 0
    seed = fields.integer(body, "seed", high=2 ** 63 - 1)
    greedy = temperature == 0.0 or top_p == 0.0
    defaults = GenerationSettings()
    try:
        return GenerationSettings(
            greedy=greedy,
            temperature=defaults.temperature if temperature is None or greedy else temperature,
            top_p=defaults.top_p if top_p is None or greedy else top_p,
            top_k=defaults.top_k if top_k is None else top_k,
            repetition_penalty=repetition_penalty(body, greedy),
            seed=None if seed is None or seed < 0 else seed,     # -1: random, as llama.cpp's clients mean it
            max_new_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            stop_strings=stop_strings(body),
            lookup=lookup_mode(body, lookup))
    except GenerationError as exc:
        raise invalid(str(exc)) from None
