"""What to send when a conversation outgrows the context: its oldest whole exchanges are left out.

The system prompt and the last message always stay; if the last message alone
does not fit, the caller gets ``ContextOverflow`` with the numbers.

Hysteresis: when the conversation overflows, exchanges are dropped from the oldest until it takes
about half the budget, not just until it fits. The kept turns then stay the same for many turns
(their KV rows are reused, or moved once: ``kv_cache``), instead of one more exchange being dropped
and everything after it recomputed on every turn. No state is kept between requests: the choice
is replayed over the conversation's history (where each exchange ended and how long it was), so
every front end, and the same conversation sent again, gets the same cut.

Each message is encoded once (``ChatTemplate.parts``) and lengths are added up, so even a huge
request of tiny messages costs one pass.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Sequence

from engine.errors import ContextOverflow
from engine.text.chat_template import ChatTemplate, Message, PromptParts

KEEP_AFTER_DROP = 0.5   # after an overflow, what is kept takes at most this share of the budget


def first_kept_exchange(parts: PromptParts, budget: int) -> int:
    """Index of the oldest exchange to keep so that ``parts.ids(first)`` fits ``budget`` (see above)."""
    sizes = [len(e) for e in parts.exchanges]
    ends = [0] + list(accumulate(sizes))
    fixed = len(parts.head) + len(parts.tail)
    # LLaMA2 folds the system prompt into the first kept exchange: about the same extra for any of them
    extra = len(parts.first_ids(0)) - sizes[0]

    def length(first: int, last: int, exact: bool = False) -> int:
        """Tokens of the prompt keeping exchanges first..last, the last one as it was when asked."""
        lead = len(parts.first_ids(first)) - sizes[first] if exact else extra
        return fixed + lead + ends[last] - ends[first] + parts.asked[last]

    first, low = 0, int(budget * KEEP_AFTER_DROP)
    for last in range(len(sizes)):               # replay: the prompt as it was when exchange ``last`` was asked
        if length(first, last) <= budget:
            continue
        while first < last and length(first, last) > low:
            first += 1
    while first < len(sizes) - 1 and length(first, len(sizes) - 1, exact=True) > budget:
        first += 1
    needed = length(first, len(sizes) - 1, exact=True)
    if needed > budget:
        raise ContextOverflow(
            f"The message is too long: {needed} tokens, but only {budget} fit in the context "
            "(with room for the answer). Shorten it, or lower the maximum answer length.",
            tokens=needed, limit=budget, code="message_too_long", params={"tokens": needed, "budget": budget})
    return first


def fit_to_context(messages: Sequence[Message], template: ChatTemplate, tokenizer,
                   budget: int) -> tuple[list[Message], list[int]]:
    """The messages kept (system prompt first) and their prompt ids."""
    parts = template.parts(messages, tokenizer)
    first = first_kept_exchange(parts, budget)
    return parts.kept_messages(first), parts.ids(first)
