"""Typed reads of one field of a JSON request, refusing a wrong type or range with a 400 that names it.

JSON ``null`` counts as absent, as in OpenAI's API. ``true``/``false`` are
never numbers here, although Python's ``bool`` is an ``int``.
"""

from __future__ import annotations

import math

from .errors import invalid


def _type_error(name: str, expected: str, value) -> Exception:
    return invalid(f"'{name}' must be {expected}, got {_describe(value)}.", name, code="invalid_type")


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f"the text {shown!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object"


def number(body: dict, name: str, low: float, high: float) -> float | None:
    """A finite number within [low, high], or None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _type_error(name, "a number", value)
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low:g} and {high:g}, got {value:g}.", name)
    return float(value)


def integer(body: dict, name: str, low: int | None = None, high: int | None = None) -> int | None:
    """A whole number within the bounds given, or None when absent. 3.0 counts as 3."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "a whole number", value)
    if low is not None and value < low:
        raise invalid(f"'{name}' must be at least {low}, got {value}.", name)
    if high is not None and value > high:
        raise invalid(f"'{name}' must be at most {high}, got {value}.", name)
    return value


def boolean(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _type_error(name, "true or false", value)
    return value


def text(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(name, "a text", value)
    return value


def texts(body: dict, name: str) -> list[str]:
    """A text or a list of texts (OpenAI's ``stop``), as a list; empty texts are dropped."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _type_error(name, "a text or a list of texts", value)
    return [item for item in value if item]


def mapping(body: dict, name: str) -> dict:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error(name, "an object", value)
    return value
