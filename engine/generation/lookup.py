"""Lookup (prompt n-gram) decoding: guess the next tokens from text already in the conversation.

An answer that repeats its input (an edited function, a quote) spends most tokens
re-typing what the conversation holds. The last few tokens chosen, found earlier
in the conversation (prompt + answer so far), suggest what follows them there;
those guesses ride along with the chosen token in one ``Executor.decode_batch``
step, which on a memory-bound CPU costs little more than one token. Row i of its
logits is exactly what decoding alone would give (batch invariance), and the
generation loop picks each row's token with its usual sampler, keeping a guess
only when the sampler picks it. So greedy answers are identical token for token;
with sampling this is the standard speculative rule for a deterministic draft
(the guess is accepted with probability p(guess), otherwise the token comes from
p with the guess removed and renormalized), realised by drawing from p and
comparing, which uses the random generator exactly as plain decoding does: a
seeded answer is identical too.

Guesses pay only when they are right often enough for what a wider step costs on
this machine and model. ``auto`` measures both as it goes: every guess made is
checked against the tokens actually chosen, also when it was not sent (so the
acceptance keeps being known while drafting is off), and the time of each step
by its width (``StepCost``, kept per engine). It drafts the number of tokens that
promises the most tokens per second, and nothing when no number beats plain
decoding. ``on`` always drafts when there is a guess; ``off`` never looks.
"""

from __future__ import annotations

from typing import Sequence

MODES = ("auto", "on", "off")
MAX_NGRAM = 4        # the longest suffix looked up; a longer match is a better guess
MIN_NGRAM = 2        # single tokens ("the", ",") recur everywhere and guess badly
MAX_DRAFT = 15       # with the chosen token, the 16 tokens ``decode_batch`` takes at most
_DECAY = 0.97        # acceptance follows the answer: copying a function, then explaining it
_PAYS = 1.05         # a draft must promise 5% more tokens per second than plain decoding
_SAMPLES = 5        # timings kept per step width
_PROBE_EVERY = 16    # auto: steps with a guess it did not send before it tries one anyway (see ``width``)
_PRIOR_WEIGHT = 4.0  # guesses' worth of the overall acceptance in a match length's own (``acceptance_of``)


class NgramIndex:
    """Where each short sequence of tokens last occurred, to guess what follows its next occurrence."""

    def __init__(self, tokens: Sequence[int] = ()):
        self.tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}   # n-gram -> index of the token that followed it last
        self.last_match = 0
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            # n-grams ending just before the new token now have a continuation: this one
            end = len(self.tokens)
            for n in range(MIN_NGRAM, MAX_NGRAM + 1):
                if end >= n:
                    self._next[tuple(self.tokens[end - n:end])] = end
            self.tokens.append(int(token))

    def guess(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the longest earlier occurrence of the current suffix
        (``last_match``: the length of that suffix, 0 for none)."""
        self.last_match = 0
        if limit <= 0:
            return []
        tokens, end = self.tokens, len(self.tokens)
        for n in range(min(MAX_NGRAM, end), MIN_NGRAM - 1, -1):
            at = self._next.get(tuple(tokens[end - n:]))
            if at is not None:
                self.last_match = n
                return tokens[at:at + limit]
        return []


class StepCost:
    """Time of a decode step by the number of tokens it carries, relative to a one-token step, as measured.

    Each wide step is timed against the median of the last few one-token steps, so a machine that is busy
    for a while slows both alike, and each width keeps the median of its last few ratios, so a burst of
    other work in either step moves it little. A width not timed yet follows the mean slope of those that
    were; before any, a step of n tokens is taken to cost 1 + ``prior_slope`` * (n - 1) one-token steps:
    on a memory-bound model most of a step is reading the weights once.
    """

    def __init__(self, prior_slope: float = 0.25):
        self.prior_slope = prior_slope
        self._singles: list[float] = []              # seconds of the latest one-token steps
        self._ratios: dict[int, list[float]] = {}    # width -> its latest ratios to a one-token step

    def record(self, tokens: int, seconds: float) -> None:
        if tokens == 1:
            self._singles = self._singles[-4:] + [seconds]
        elif self._singles:
            ratios = self._ratios.setdefault(tokens, [])
            ratios.append(seconds / _median(self._singles))
            del ratios[:-_SAMPLES]

    @property
    def slope(self) -> float:
        """Extra cost of each further token in a step, in one-token steps (the mean over the widths timed)."""
        slopes = [(_median(r) - 1.0) / (n - 1) for n, r in self._ratios.items()]
        return max(0.01, sum(slopes) / len(slopes)) if slopes else self.prior_slope

    def ratio(self, tokens: int) -> float:
        measured = self._ratios.get(tokens)
        return max(1.0, _median(measured)) if measured else 1.0 + self.slope * (tokens - 1)


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def expected_tokens(acceptance: float, drafted: int) -> float:
    """Tokens one step yields with ``drafted`` guesses, each right with ``acceptance`` once those before were."""
    return sum(acceptance ** i for i in range(drafted + 1))


class LookupDrafter:
    """Guesses for one answer, and how many of them to send, per ``mode``."""

    def __init__(self, mode: str, cost: StepCost | None = None, index: NgramIndex | None = None):
        if mode not in MODES:
            raise ValueError(f"lookup must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode, self.cost = mode, cost or StepCost()
        self.index = index or NgramIndex()
        self.hits, self.misses = 1.0, 1.0    # checked guesses so far (decayed), from an even prior
        # the same, by the length of the match a guess came from: a 4-token match that recurs (a copied line)
        # comes true far more often than a 2-token one (", the"), so each drafts by its own record
        self._by_match: dict[int, list[float]] = {}
        self._match = 0                      # the match length of the latest draft
        self.drafted = self.accepted = 0
        self._idle = 0                       # steps with a guess that auto did not send

    @property
    def acceptance(self) -> float:
        return self.hits / (self.hits + self.misses)

    def acceptance_of(self, match: int) -> float:
        """Acceptance of guesses from matches of ``match`` tokens: their own record, which the overall
        acceptance stands in for (worth ``_PRIOR_WEIGHT`` guesses) until they have one."""
        hits, misses = self._by_match.get(match, (0.0, 0.0))
        return (hits + _PRIOR_WEIGHT * self.acceptance) / (hits + misses + _PRIOR_WEIGHT)

    def begin(self, prompt: Sequence[int]) -> None:
        """The conversation so far (the prompt, checked): where guesses are looked up."""
        self.index.extend(prompt)

    def seen(self, token: int) -> None:
        """A token of the answer was chosen: it is part of the conversation to look in."""
        self.index.extend([token])

    def draft(self, limit: int) -> tuple[list[int], list[int]]:
        """(guesses to send after the last token seen, every guess made: to ``check`` once chosen)."""
        guess = self.index.guess(min(limit, MAX_DRAFT))
        self._match = getattr(self.index, "last_match", 0)
        return guess[:self.width(len(guess))], guess

    def width(self, available: int) -> int:
        """How many of ``available`` guesses to send: the count that promises most tokens per second.

        When the measured cost says none but the acceptance would pay at the prior cost, a guess is still
        sent every ``_PROBE_EVERY`` steps: a wide step timed while the machine was busy must not stop
        drafting for good.
        """
        if self.mode == "off" or available == 0:
            return 0
        best = self._best_width(available, self.cost.ratio)
        if self.mode == "on":
            return max(best, 1)
        self._idle = 0 if best else self._idle + 1
        if self._idle >= _PROBE_EVERY:
            self._idle = 0
            prior = self.cost.prior_slope
            return self._best_width(available, lambda n: 1.0 + prior * (n - 1))
        return best

    def _best_width(self, available: int, ratio) -> int:
        alpha, best, best_rate = self.acceptance_of(self._match), 0, _PAYS
        for k in range(1, available + 1):
            rate = expected_tokens(alpha, k) / ratio(k + 1)
            if rate > best_rate:
                best, best_rate = k, rate
        return best

    def check(self, guess: Sequence[int], sent: int, chosen: Sequence[int]) -> None:
        """Score the guesses made before a step against the tokens chosen in it (``sent`` of them were sent)."""
        if not guess:
            return
        record = self._by_match.setdefault(self._match, [0.0, 0.0])
        self.hits *= _DECAY
        self.misses *= _DECAY
        record[0] *= _DECAY
        record[1] *= _DECAY
        right = 0
        for g, c in zip(guess, chosen):
            if g != c:
                self.misses += 1
                record[1] += 1
                break
            right += 1
        self.hits += right
        record[0] += right
        self.drafted += sent
        self.accepted += min(right, sent)
