"""Lookup decoding's speed-up: decode tokens/s with ``--lookup auto`` (and ``on``) over ``off``, same run.

    python bench/lookup.py                 # the built-in model, then the ~1B shape (gqa-0.85b, bf16)
    python bench/lookup.py --repeats 5 --json bench-lookup.json

Tasks: two that repeat their input (copy a function changing one name; quote a
paragraph and summarize it) and an ordinary chat question. Each is answered
greedily with lookup off, auto and on, in turns, ``--repeats`` times; the best
decode rate of each counts (the machine is shared: other programs only ever slow
a run down). The answers must be identical token for token, or the bench fails.

The ~1B shape is a synthetic checkpoint (random weights: it copies nothing, and
has no tokenizer), so on it we measure (1) its ordinary decoding with lookup
auto against off on a prompt of random ids - what lookup costs where guesses do
not come true - and (2) a replay: the very steps the built-in model took on
each task with lookup on (how many tokens each step carried and kept), run
through the 1B shape's ``decode_batch``, against as many one-token steps. That
is what the 1B shape's kernels give for the built-in model's acceptance; a real
1B model copies at least as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
REPEATING = ("copy a function, one name changed", "quote and summarize")
MODES = ("off", "auto", "on")


class StepLog:
    """Wraps an executor's decode calls: records each step's width, to replay elsewhere."""

    def __init__(self, executor):
        self.executor, self.widths = executor, []

    def __getattr__(self, name):
        return getattr(self.executor, name)

    def decode(self, token, pos):
        self.widths.append(1)
        return self.executor.decode(token, pos)

    def decode_batch(self, tokens, pos):
        self.widths.append(len(tokens))
        return self.executor.decode_batch(tokens, pos)


def measure_builtin(repeats: int, max_new_tokens: int) -> tuple[dict, dict]:
    """{task: {mode: best decode tok/s, ...}} and {task: the widths of the steps lookup "on" took}."""
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
        engine.reset_cache()
        log = StepLog(engine.executor)
        engine.executor = log
        kept = engine.chat([{"role": "user", "content": content}], replace(plain, lookup="on")).stats.decode_tokens
        engine.executor = log.executor
        replays[task] = (log.widths, kept)
        s = row["on"]
        results[task] = {"tokens": len(answers["off"]), "tok_s": {m: round(v, 1) for m, v in best.items()},
                         "auto_x": round(best["auto"] / best["off"], 3), "on_x": round(best["on"] / best["off"], 3),
                         "on_kept": f"{s.accepted_tokens}/{s.drafted_tokens}", "auto_kept":
                         f"{row['auto'].accepted_tokens}/{row['auto'].drafted_tokens}",
                         "step_slope": round(engine.step_cost.slope, 3)}
    engine.close()
    return results, replays


def measure_shape(repeats: int, max_new_tokens: int, replays: dict) -> dict:
    """The ~1B shape: ordinary decoding auto vs off (random ids), and the built-in model's steps replayed."""
    from speed import _ensure_model

    config, ckpt = _ensure_model("gqa-0.85b", "bfloat16")
    engine = load_engine(ModelSource(version=2, config=str(config), checkpoint=str(ckpt), need_tokenizer=False),
                         ExecutorOptions(backend="cpu", max_seq_len=1024))
    prompt = [1] + [int(t) for t in np.random.default_rng(0).integers(3, 32000, 60)]
    plain = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    best, answers = {"off": 0.0, "auto": 0.0}, {}
    for _ in range(repeats):
        for mode in best:
            engine.reset_cache()
            done = engine.complete_ids(prompt, replace(plain, lookup=mode))
            answers.setdefault(mode, done.output_ids)
            if done.output_ids != answers["off"]:
                raise SystemExit(f"1B shape: lookup {mode} changed the answer")
            best[mode] = max(best[mode], done.stats.decode_tokens_per_s)
    out = {"ordinary (random ids)": {"tok_s": {m: round(v, 1) for m, v in best.items()},
                                     "auto_x": round(best["auto"] / best["off"], 3)}}
    ex = engine.executor
    ex.prefill(prompt, 0)
    for task in REPEATING:
        widths, kept = replays[task]     # the steps lookup took, and the tokens they kept
        best_on = best_off = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for pos, width in enumerate(widths, len(prompt)):
                ex.decode_batch([5] * width, pos)
            best_on = min(best_on, time.perf_counter() - start)
            start = time.perf_counter()
            for pos in range(len(prompt), len(prompt) + kept):
                ex.decode(5, pos)
            best_off = min(best_off, time.perf_counter() - start)
        out[f"replay: {task}"] = {"steps": len(widths), "tokens_kept": kept, "one_token_steps_s": round(best_off, 3),
                                  "lookup_steps_s": round(best_on, 3), "on_x": round(best_off / best_on, 3)}
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
