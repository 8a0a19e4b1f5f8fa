"""What to send when a conversation outgrows the context: its oldest whole exchanges are left out.

The system prompt and the last message always stay; if the last message alone
does not fit, the caller gets ``ContextOverflow`` with the numbers.
"""

from __future__ import annotations

from typing import Sequence

from engine.errors import ContextOverflow
from engine.text.chat_template import ChatTemplate, Message


def fit_to_context(messages: Sequence[Message], template: ChatTemplate, tokenizer,
                   budget: int) -> tuple[list[Message], list[int]]:
    """Drop the oldest turns (never the system prompt or the last message) until the prompt fits."""
    kept = list(messages)
    while True:
        ids = template.render(kept, tokenizer)
        if len(ids) <= budget:
            return kept, ids
        first = 1 if kept and kept[0]["role"] == "system" else 0
        if len(kept) - first <= 1:
            raise ContextOverflow(
                f"The message is too long: {len(ids)} tokens, but only {budget} fit in the context "
                "(with room for the answer). Shorten it, or lower the maximum answer length.",
                tokens=len(ids), limit=budget)
        # drop one whole exchange: the oldest user message and the replies that follow it
        del kept[first]
        while len(kept) - first > 1 and kept[first]["role"] == "assistant":
            del kept[first]
