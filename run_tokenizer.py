"""Try a LLaMA2/LLaMA3 tokenizer from the command line: text -> ids -> text.

    python run_tokenizer.py -V 2                       # interactive, LLaMA2
    python run_tokenizer.py -V 3 --text "Hello world" --json

Useful to check that a downloaded tokenizer.model is the right one before
loading a multi-gigabyte checkpoint. Errors a user can fix are printed as one
message on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli_support import report, utf8_stdio
from engine.errors import EngineError
from engine.paths import default_model_files
from engine.text.tokenizers import Tokenizer, load_tokenizer
from engine.text.tokenizers.base import clean_text
from engine.text.tokenizers.mindformers_counts import mindformers_vocab_sizes



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Encode text with a LLaMA tokenizer and decode it back.")
    parser.add_argument("-V", "--version", type=int, choices=(2, 3), required=True,
                        help="LLaMA version: 2 (SentencePiece) or 3 (tiktoken)")
    parser.add_argument("-F", "--tokenizer-file", type=Path, default=None,
                        help="tokenizer.model (default: checkpoint_download/llama<V>/tokenizer.model)")
    parser.add_argument("--fast", action="store_true",
                        help="LLaMA2: use the Rust 'tokenizers' build (same ids, faster)")
    parser.add_argument("--text", default=None, help="encode this text and exit (else: interactive)")
    parser.add_argument("--json", action="store_true", help="with --text: print one JSON object")
    parser.add_argument("--no-bos", action="store_true", help="do not prepend the BOS token")
    args = parser.parse_args(argv)
    if args.json and args.text is None:
        parser.error("--json needs --text")
    return args


def result(tok: Tokenizer, text: str, bos: bool) -> dict:
    text = clean_text(text)
    ids = tok.encode(text, bos=bos)
    decoded = tok.decode(ids)
    return {
        "tokenizer": tok.name,
        "file": str(tok.path),
        "text": text,
        "ids": ids,
        "count": len(ids),
        "decoded": decoded,
        "round_trip": decoded == text,
        "bos": bos and tok.bos_id is not None,
        "vocab_size": tok.vocab_size,
        "vocab_size_with_added": tok.vocab_size_with_added,
        "mindformers": _mindformers_sizes(tok),
    }


def _mindformers_sizes(tok: Tokenizer) -> dict | None:
    sizes = mindformers_vocab_sizes(tok)
    if sizes is None:
        return None
    return {"vocab_size": sizes.vocab_size, "vocab_size_with_added_tokens": sizes.with_added_tokens,
            "counted_twice": list(sizes.counted_twice)}


def print_vocab_sizes(tok: Tokenizer) -> None:
    """MindFormers' figures (what its tutorial prints) and ours, each with what it counts."""
    sizes = mindformers_vocab_sizes(tok)
    if sizes is not None:
        print(f"vocab_size: {sizes.vocab_size}")
        print(f"vocab_size (with added tokens): {sizes.with_added_tokens}")
        print(f"  (MindFormers' figures: its tokenizer counts {', '.join(sizes.counted_twice)} a second time "
              "as added tokens; they are not new ids)")
    print(f"vocab size: {tok.vocab_size} ({tok.vocab_size_with_added} with special tokens)"
          + ("  (llama-desk's: regular tokens, and every id)" if sizes is not None else ""))


def print_result(res: dict) -> None:
    print(f"ids ({res['count']}): {res['ids']}")
    mark = "" if res["round_trip"] else "   (differs from the input)"
    print(f"decoded: {res['decoded']}{mark}")


def interactive(tok: Tokenizer, bos: bool) -> None:
    print(f"tokenizer: {tok.name} ({tok.path})")
    print_vocab_sizes(tok)
    print("Type a line of text; an empty line, Ctrl-Z/Ctrl-D or Ctrl-C quits.")
    while True:
        try:
            line = input("text> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not line:
            return
        print_result(result(tok, line, bos))


def main(argv: list[str] | None = None) -> int:
    utf8_stdio()
    args = parse_args(argv)
    if args.fast and args.version == 3:
        print("note: LLaMA3's tokenizer is already the fast (tiktoken) kind; --fast changes nothing.",
              file=sys.stderr)
    path = args.tokenizer_file or default_model_files(args.version)["tokenizer"]
    bos = not args.no_bos
    try:
        tok = load_tokenizer(path, args.version, fast=args.fast)
        if args.text is None:
            interactive(tok, bos)
            return 0
        res = result(tok, args.text, bos)
    except EngineError as exc:
        return report(exc, args.version)
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(res, ensure_ascii=False))
    else:
        print(f"tokenizer: {tok.name} ({tok.path})")
        print_vocab_sizes(tok)
        print_result(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
