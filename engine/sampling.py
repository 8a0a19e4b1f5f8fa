"""Choosing the next token from logits: small pure numpy functions.

Order follows HF/llama.cpp: repetition penalty, temperature, top-k, top-p,
then a draw from a seeded generator. Greedy is plain argmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    greedy: bool = False
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    seed: int | None = None


def apply_repetition_penalty(logits: np.ndarray, seen: Iterable[int], penalty: float) -> np.ndarray:
    """CTRL-style: make already-seen tokens less likely (divide positive, multiply negative)."""
    if penalty == 1.0:
        return logits
    ids = np.fromiter(set(seen), dtype=np.int64)
    if ids.size == 0:
        return logits
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
    """Holds the random generator so a seed makes a whole answer reproducible."""

    def __init__(self, settings: SamplingSettings):
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)

    def __call__(self, logits: np.ndarray, seen: Iterable[int]) -> int:
        s = self.settings
        logits = apply_repetition_penalty(logits, seen, s.repetition_penalty)
        if s.greedy or s.temperature <= 0:
            return int(np.argmax(logits))
        probs = logits_to_probs(logits, s.temperature, s.top_k, s.top_p)
        return int(self.rng.choice(probs.size, p=probs))
