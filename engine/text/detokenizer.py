"""Turning a growing list of token ids into safe text deltas.

Tokens do not map to characters: a Chinese character is often three byte
tokens, and SentencePiece drops the leading space of the first piece it
decodes. Following the usual detokenize-incrementally scheme, we decode a
small window twice (with and without the new tokens) and only emit text once
it no longer ends in an incomplete character (U+FFFD). Stop strings are held
back while the text could still be the start of one.
"""

from __future__ import annotations

from typing import Sequence

_INCOMPLETE = "\ufffd"


class IncrementalDecoder:
    def __init__(self, tokenizer, context_ids: Sequence[int] = ()):
        self.tokenizer = tokenizer
        # a few prompt tokens give SentencePiece the left context it needs for spaces
        self.ids: list[int] = list(context_ids)[-4:]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        # A raw prompt may end inside a character: its bytes belong to the first delta.
        while self.read_offset and tokenizer.decode(self.ids[:self.read_offset]).endswith(_INCOMPLETE):
            self.read_offset -= 1

    def push(self, token: int) -> str:
        self.ids.append(token)
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset])
        full = self.tokenizer.decode(self.ids[self.prefix_offset:])
        if len(full) > len(prefix) and not full.endswith(_INCOMPLETE):
            delta = full[len(prefix):]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character stays as U+FFFD)."""
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset])
        full = self.tokenizer.decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix):] if full.startswith(prefix) else ""


class StopStringFilter:
    """Passes text through, holding back any tail that could begin a stop string."""

    def __init__(self, stop_strings: Sequence[str]):
        self.stops = [s for s in stop_strings if s]
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if not self.stops:
            return text
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[:min(hits)], ""
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
