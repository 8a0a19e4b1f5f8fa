"""The vocabulary sizes MindFormers' LLaMA tokenizers print, and what they count.

Users following MindFormers' tutorial see ``vocab_size: 32000`` and
``vocab_size (with added tokens): 32003`` for LLaMA2, ``128256`` / ``128259``
for LLaMA3, and compare them with ours, so we print the same figures. The "+3"
are not three more tokens: MindFormers' slow tokenizers give
``len(tokenizer) = vocab_size + len(added_tokens_encoder)``, and they register
their special tokens as "added tokens" although each already has an id in the
vocabulary, so those ids are counted twice:

- LLaMA2 (``LlamaTokenizer``): ``<unk>``, ``<s>``, ``</s>`` (ids 0, 1, 2);
  ``vocab_size`` is the number of SentencePiece pieces. (``LlamaTokenizerFast``
  counts each id once: 32000.)
- LLaMA3 (``Llama3Tokenizer`` from MindFormers' research/llama3 folder; the
  2.0.0 wheel has none): ``<|begin_of_text|>``, ``<|end_of_text|>`` and the pad
  token ``<|reserved_special_token_0|>`` (ids 128000-128002); its ``vocab_size``
  already includes the 256 special tokens, where ours counts BPE tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTED_TWICE = {
    2: ("<unk>", "<s>", "</s>"),
    3: ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"),
}


@dataclass(frozen=True)
class MindFormersVocabSizes:
    vocab_size: int
    with_added_tokens: int
    counted_twice: tuple[str, ...]


def mindformers_vocab_sizes(tok) -> MindFormersVocabSizes | None:
    """What MindFormers' tokenizer for ``tok``'s file reports; None for files it has no tokenizer for."""
    if tok.name.startswith("llama2"):
        size, twice = tok.vocab_size, COUNTED_TWICE[2]
    elif tok.name.startswith("llama3"):
        size, twice = tok.vocab_size_with_added, COUNTED_TWICE[3]
    else:
        return None
    return MindFormersVocabSizes(size, size + len(twice), twice)
