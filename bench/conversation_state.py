"""What a long conversation costs on a 7-8B model: prefill, and the time to the first new token
when its history is computed afresh, read back from its saved state, or moved after an overflow.

    python bench/synthetic_checkpoint.py -V 3 -o llama3_8b.ckpt          # full size, random weights (16 GB)
    python bench/conversation_state.py -C llama3_8b.yaml -M llama3_8b.ckpt --quantize int8
    python bench/conversation_state.py -C llama3_8b.yaml -M llama3_8b.ckpt --only prefill

Measured in one process, in this order, on a history of ``--history`` token ids (random ids: the
time does not depend on which tokens they are):

- prefill: tokens/s computing a ``--prompt``-token prompt from nothing;
- fresh: time to the first token of the whole history, computed (the state is saved meanwhile,
  in the background, and the save's time is reported once it is on disk);
- shift: the conversation outgrew the context: the first ``--drop`` tokens after a 64-token system
  prompt are dropped, the rest is moved back, and a 16-token question is asked;
- restored: as after a restart (nothing in memory): the history read back from the state file, first
  from the page cache ("warm") and then, with the file's pages dropped from it (``posix_fadvise``; only
  this file's), from the disk ("cold"); followed by one new token (the issue's measure: reading the state
  plus one decode step) and by a 16-token question.

The restored and shifted figures include computing what follows the history, and the first answer token.
``--state FILE`` keeps the state file (and reuses it if it is there, skipping the fresh computation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import ExecutorOptions, GenerationSettings, ModelSource, load_engine  # noqa: E402

ONE_TOKEN = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=1)
SYSTEM = 64
QUESTION = 16


def _ids(n: int, seed: int, vocab: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).integers(100, min(vocab, 30000), n)]


def drop_from_page_cache(path: Path) -> bool:
    """Evict one file's pages from the OS page cache (Linux), so the next read comes from the disk."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def run(args) -> dict:
    started = time.perf_counter()
    engine = load_engine(ModelSource(args.version, args.model, config=args.config, need_tokenizer=False),
                         ExecutorOptions(backend="cpu", weight_format=args.quantize,
                                         max_seq_len=args.history + QUESTION + 64))
    vocab = engine.config.vocab_size
    out = {"model": str(args.model), "weights": engine.info.weight_format, "load_s": round(time.perf_counter() - started, 1),
           "kv": engine.executor.kv_element_type}
    steps = args.only.split(",")
    if "prefill" in steps:
        engine.reset_cache()
        reply = engine.complete_ids(_ids(args.prompt, 1, vocab), ONE_TOKEN)
        out["prefill_tokens"] = args.prompt
        out["prefill_tokens_per_s"] = round(reply.stats.prefill_tokens_per_s, 2)
        print(f"prefill: {args.prompt} tokens at {out['prefill_tokens_per_s']} tokens/s", file=sys.stderr, flush=True)
    if not {"fresh", "shift", "restored"} & set(steps):
        return out
    history = _ids(args.history, 2, vocab)
    question = _ids(QUESTION, 3, vocab)
    with tempfile.TemporaryDirectory(dir=args.state_dir) as tmp:
        state = Path(args.state) if args.state else Path(tmp) / "conversation.kvstate"
        engine.reset_cache()
        if not state.is_file() or "fresh" in steps:
            reply = engine.complete_ids(history, ONE_TOKEN, state_file=state)
            out["fresh_ttft_s"] = round(reply.stats.ttft_s, 2)
            saving = time.perf_counter()
            engine.flush_states()
            out["save_wait_s"] = round(time.perf_counter() - saving, 2)   # what was left of the background save
            print(f"fresh: first token after {out['fresh_ttft_s']} s", file=sys.stderr, flush=True)
        else:
            engine.complete_ids(history[:args.history // 2], ONE_TOKEN)  # warm the engine, not its cache
        out["state_bytes"] = state.stat().st_size
        print(f"state: {out['state_bytes'] / 1e6:.0f} MB", file=sys.stderr, flush=True)
        if "shift" in steps:
            engine.reset_cache()
            engine.complete_ids(history, ONE_TOKEN, state_file=state)   # the history in memory (read back)
            moved = history[:SYSTEM] + history[SYSTEM + args.drop:] + question
            reply = engine.complete_ids(moved, ONE_TOKEN)
            out.update(shift_ttft_s=round(reply.stats.ttft_s, 2), shifted_tokens=reply.stats.shifted_tokens,
                       shift_computed_tokens=reply.stats.prefilled_tokens)
            print(f"shift: {reply.stats.shifted_tokens} tokens moved, {reply.stats.prefilled_tokens} computed, first "
                  f"token after {out['shift_ttft_s']} s", file=sys.stderr, flush=True)
        if "restored" in steps:
            copy = Path(tmp) / "copy.kvstate"
            for temperature in ("warm", "cold"):
                for follow in (question[:1], question):
                    shutil.copyfile(state, copy)       # each run reads the same state (a run appends to it)
                    if temperature == "cold" and not drop_from_page_cache(copy):
                        continue
                    engine.reset_cache()
                    reply = engine.complete_ids(history + follow, ONE_TOKEN, state_file=copy)
                    key = f"restored_{temperature}_{len(follow)}"
                    out[f"{key}_ttft_s"] = round(reply.stats.ttft_s, 2)
                    out[f"{key}_read_s"] = round(reply.stats.reuse_s, 2)
                    out["restored_tokens"] = reply.stats.restored_tokens
                    engine.flush_states()
                    print(f"restored ({temperature}): {reply.stats.restored_tokens} tokens read back in "
                          f"{reply.stats.reuse_s:.2f} s, then {len(follow)} new: first token after "
                          f"{reply.stats.ttft_s:.2f} s", file=sys.stderr, flush=True)
    engine.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", type=int, choices=(2, 3), default=3)
    p.add_argument("-C", "--config", required=True)
    p.add_argument("-M", "--model", required=True)
    p.add_argument("--quantize", choices=("stored", "int8"), default="stored")
    p.add_argument("--history", type=int, default=2000, help="tokens of conversation history (default 2000)")
    p.add_argument("--prompt", type=int, default=1000, help="tokens of the prefill measurement (default 1000)")
    p.add_argument("--drop", type=int, default=1000, help="tokens the shift leaves out (default 1000)")
    p.add_argument("--only", default="prefill,fresh,shift,restored")
    p.add_argument("--state-dir", help="where the state file is written (default: the system's temp folder)")
    p.add_argument("--state", help="keep the conversation's state in this file (reused when it is there)")
    args = p.parse_args()
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
