"""Lookup decoding's speed-up: decode tokens/s with ``--lookup auto`` (and ``on``) over ``off``, same run.

    python bench/lookup.py                 # the built-in model, then the ~1B shape (gqa-0.85b, bf16)
    python bench/lookup.py --repeats 5 --json bench-lookup.json

``free_step_bound`` is the ceiling an answer itself sets: tokens per step if
every guess were sent and a wide step cost no more than one (the built-in
model answers the copy task by rewriting the function: 1.82x at most).

Tasks: two that repeat their input (copy a function changing one name; quote a
paragraph and summarize it) and an ordinary chat question. Each is answered
greedily with lookup off, auto and on, in turns, ``--repeats`` times; the best
decode rate of each counts (the machine is shared: other programs only ever slow
a run down). The answers must be identical token for token, or the bench fails.

The ~1B shape is a synthetic checkpoint (random weights: it copies nothing, and
has no tokenizer), so on it each task is run as the built-in model answered it:
the 1B shape's real steps (``decode_batch``, timed, and auto's choices made from
those timings) with its logits replaced by the built-in model's answer, so the
answer, and which guesses come true, are the built-in model's. That is what the
1B shape's kernels give a model that answers as the built-in one does.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import ExecutorOptions, GenerationSettings, ModelSource, load_engine  # noqa: E402

CODE = '''def total_price(items, tax_rate):
    """Return the price of all items, tax included."""
    subtotal = 0
    for item in items:
        subtotal += item.price * item.quantity
    tax = subtotal * tax_rate
    return subtotal + tax
'''
PARAGRAPH = ("The Great Wall of China is a series of fortifications that were built across the historical northern "
             "borders of ancient Chinese states and Imperial China as protection against various nomadic groups from "
             "the Eurasian Steppe. Several walls were built from as early as the 7th century BC, with selective "
             "stretches later joined by Qin Shi Huang, the first emperor of China.")
TASKS = {
    "copy a function, one name changed": "```python\n" + CODE + "```\n\nRewrite this function with `subtotal` "
                                         "renamed to `net`. Reply with the complete code only.",
    "quote and summarize": "Quote the following paragraph exactly, then summarize it in one sentence.\n\n" + PARAGRAPH,
    "ordinary chat": "Tell me about the history of tea in three short paragraphs.",
}
MODES = ("off", "auto", "on")


class ForcedAnswer:
    """An executor that computes as ``inner`` does (same steps, same time) but whose logits choose ``answer``:
    the row for the token at position p picks answer[p + 1 - len(prompt)]."""

    def __init__(self, inner, prompt_length: int, answer: list[int]):
        self.inner, self.prompt_length, self.answer = inner, prompt_length, answer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _row(self, pos: int) -> np.ndarray:
        row = np.zeros(self.inner.config.vocab_size, np.float32)
        index = pos + 1 - self.prompt_length
        row[self.answer[index] if index < len(self.answer) else 0] = 1.0
        return row

    def prefill(self, ids, start_pos, cancel=None, progress=None):
        self.inner.prefill(ids, start_pos, cancel=cancel, progress=progress)
        return self._row(start_pos + len(ids) - 1)

    def decode(self, token, pos):
        self.inner.decode(token, pos)
        return self._row(pos)

    def decode_batch(self, tokens, pos):
        self.inner.decode_batch(tokens, pos)
        return np.stack([self._row(pos + t) for t in range(len(tokens))])


def free_step_bound(prompt: list[int], answer: list[int]) -> float:
    """The most lookup can give this answer: tokens per step if every guess were sent and wide steps cost nothing.

    What an answer repeats bounds the speed-up, whatever the kernels: each step yields its chosen token and the
    guesses that come true, found as ``LookupDrafter`` finds them (longest earlier 2-4-token match, up to 15).
    """
    from engine.generation.lookup import MAX_DRAFT, NgramIndex

    index, done, steps = NgramIndex(prompt), 1, 0      # the first answer token comes from the prompt's step
    index.extend(answer[:1])
    while done < len(answer):
        guess, right = index.guess(MAX_DRAFT), 0
        for g, token in zip(guess, answer[done:]):
            if g != token:
                break
            right += 1
        index.extend(answer[done:done + 1 + right])
        done, steps = done + 1 + right, steps + 1
    return (len(answer) - 1) / steps if steps else 1.0


def measure_builtin(repeats: int, max_new_tokens: int) -> tuple[dict, dict]:
    """{task: {mode: best decode tok/s, ...}} and {task: (prompt ids, answer ids)}."""
    engine = load_engine(ModelSource(builtin=True), ExecutorOptions(backend="cpu", max_seq_len=2048))
    plain = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    results, replays = {}, {}
    for task, content in TASKS.items():
        best, answers, row = {m: 0.0 for m in MODES}, {}, {}
        for _ in range(repeats):
            for mode in MODES:
                engine.reset_cache()
                done = engine.chat([{"role": "user", "content": content}], replace(plain, lookup=mode))
                answers.setdefault(mode, done.output_ids)
                if done.output_ids != answers["off"]:
                    raise SystemExit(f"{task}: lookup {mode} changed the answer")
                best[mode] = max(best[mode], done.stats.decode_tokens_per_s)
                row[mode] = done.stats
        replays[task] = (engine.prepare_chat([{"role": "user", "content": content}]).ids, answers["off"])
        s = row["on"]
        results[task] = {"tokens": len(answers["off"]), "tok_s": {m: round(v, 1) for m, v in best.items()},
                         "auto_x": round(best["auto"] / best["off"], 3), "on_x": round(best["on"] / best["off"], 3),
                         "on_kept": f"{s.accepted_tokens}/{s.drafted_tokens}", "auto_kept":
                         f"{row['auto'].accepted_tokens}/{row['auto'].drafted_tokens}",
                         "step_slope": round(engine.step_cost.slope, 3),
                         "free_step_bound": round(free_step_bound(*replays[task]), 2)}
    engine.close()
    return results, replays


def measure_shape(repeats: int, max_new_tokens: int, replays: dict) -> dict:
    """The ~1B shape: each task as the built-in model answered it, lookup auto against off."""
    from speed import _ensure_model

    config, ckpt = _ensure_model("gqa-0.85b", "bfloat16")
    engine = load_engine(ModelSource(version=2, config=str(config), checkpoint=str(ckpt), need_tokenizer=False),
                         ExecutorOptions(backend="cpu", max_seq_len=1024))
    out = {}
    from engine.generation.lookup import LookupDrafter
    from engine.generation.loop import generate
    from engine.generation.sampling import SamplingSettings

    vocab, cost = engine.config.vocab_size, engine.step_cost   # auto's timings of this shape's steps
    for task in TASKS:
        prompt_ids, answer = ([i % vocab for i in ids] for ids in replays[task])   # the same text, as 1B ids
        forced = ForcedAnswer(engine.executor, len(prompt_ids), answer)
        best = {"off": 0.0, "auto": 0.0}
        for _ in range(repeats):
            for mode in best:
                done = generate(forced, prompt_ids, max_new_tokens=len(answer), lookup=LookupDrafter(mode, cost)
                                if mode != "off" else None, sampling=SamplingSettings(greedy=True,
                                                                                      repetition_penalty=1.0))
                assert done.output_ids == answer
                best[mode] = max(best[mode], done.stats.decode_tokens_per_s)
                if mode == "auto":
                    kept = f"{done.stats.accepted_tokens}/{done.stats.drafted_tokens}"
        out[task] = {"tok_s": {m: round(v, 1) for m, v in best.items()},
                                                    "auto_x": round(best["auto"] / best["off"], 3), "auto_kept": kept,
                                                    "step_slope": round(cost.slope, 3)}
    engine.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--skip-shape", action="store_true", help="the built-in model only")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    builtin, replays = measure_builtin(args.repeats, args.max_new_tokens)
    report = {"built-in (SmolLM2-135M, Q4_1)": builtin}
    if not args.skip_shape:
        report["gqa-0.85b (bf16, synthetic)"] = measure_shape(args.repeats, args.max_new_tokens, replays)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
