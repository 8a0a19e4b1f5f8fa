"""Choosing the next token from logits: small pure numpy functions, and the settings they obey.

Order follows HF/llama.cpp: repetition penalty, temperature, top-k, top-p,
then a draw from a seeded generator. Greedy is plain argmax. The repetition
penalty looks at the last ``repetition_window`` tokens only (llama.cpp's
``repeat_last_n`` = 64) and never at the chat template's control tokens, so an
earlier turn's end-of-turn token does not make the model less willing to stop.
Settings are checked once, here, so every front end gets the same errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.errors import GenerationError


def _number(name: str, value, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "a whole number" if integer else "a finite number"
        raise GenerationError(f"{name} must be {kind}, got {value!r}.",
                              code="setting_not_a_whole_number" if integer else "setting_not_a_finite_number",
                              params={"name": name, "value": value})
    return value


@dataclass(frozen=True)
class SamplingSettings:
    greedy: bool = False
    temperature: float = 0.7          # 0 means greedy
    top_k: int = 40                   # 0 turns it off
    top_p: float = 0.95               # 1 turns it off
    repetition_penalty: float = 1.1   # 1 turns it off
    repetition_window: int = 64       # how many recent tokens the penalty looks at
    seed: int | None = None           # None: a different draw each time

    def __post_init__(self):
        if _number("temperature", self.temperature) < 0:
            raise GenerationError(f"temperature must be 0 or more (0 = always the most likely token), "
                                  f"got {self.temperature}.",
                                  code="temperature_invalid", params={"value": self.temperature})
        if _number("top_k", self.top_k, integer=True) < 0:
            raise GenerationError(f"top_k must be 0 (off) or more, got {self.top_k}.",
                                  code="top_k_invalid", params={"value": self.top_k})
        if not 0 < _number("top_p", self.top_p) <= 1:
            raise GenerationError(f"top_p must be above 0 and at most 1 (1 = off), got {self.top_p}.",
                                  code="top_p_invalid", params={"value": self.top_p})
        if _number("repetition_penalty", self.repetition_penalty) <= 0:
            raise GenerationError(f"repetition_penalty must be above 0 (1 = off), got {self.repetition_penalty}.",
                                  code="repetition_penalty_invalid", params={"value": self.repetition_penalty})
        if _number("repetition_window", self.repetition_window, integer=True) < 0:
            raise GenerationError(f"repetition_window must be 0 or more, got {self.repetition_window}.",
                                  code="repetition_window_invalid", params={"value": self.repetition_window})
        if self.seed is not None and not 0 <= _number("seed", self.seed, integer=True) < 2 ** 63:
            raise GenerationError(f"seed must be between 0 and 2^63-1 (leave it out for a random one), "
                                  f"got {self.seed}.",
                                  code="seed_invalid", params={"value": self.seed})


def apply_repetition_penalty(logits: np.ndarray, recent: Sequence[int], penalty: float) -> np.ndarray:
    """CTRL-style: make recently seen tokens less likely (divide positive, multiply negative)."""
    if penalty == 1.0 or not len(recent):
        return logits
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    logits = logits.copy()
    vals = logits[ids]
    logits[ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return logits


def logits_to_probs(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    logits = logits.astype(np.float64) / max(temperature, 1e-5)
    if 0 < top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if 0 < top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        cut = int(np.searchsorted(cumulative, top_p)) + 1  # keep the token that crosses top_p
        keep = np.zeros_like(probs, dtype=bool)
        keep[order[:cut]] = True
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum()
    return probs


class Sampler:
    """Holds the random generator (a seed makes a whole answer reproducible) and the penalty window."""

    def __init__(self, settings: SamplingSettings, control_ids: frozenset[int] = frozenset(),
                 vocab_limit: int | None = None):
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self.control_ids = control_ids
        self.vocab_limit = vocab_limit
        self.recent: list[int] = []

    def remember(self, ids: Sequence[int]) -> None:
        """Add tokens to the penalty history (control tokens and ids past the vocabulary are left out)."""
        limit = self.vocab_limit
        self.recent.extend(i for i in ids if i not in self.control_ids and (limit is None or i < limit))
        window = self.settings.repetition_window
        del self.recent[:max(0, len(self.recent) - window)]

    def __call__(self, logits: np.ndarray) -> int:
        s = self.settings
        if s.repetition_window:
            logits = apply_repetition_penalty(logits, self.recent, s.repetition_penalty)
        if s.greedy or s.temperature == 0:
            return int(np.argmax(logits))
        probs = logits_to_probs(logits, s.temperature, s.top_k, s.top_p)
        return int(self.rng.choice(probs.size, p=probs))
