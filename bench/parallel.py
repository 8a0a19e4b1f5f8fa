"""``--parallel``: aggregate tokens/s of several API clients at once against one client, same run.

    python bench/parallel.py                       # the built-in model, then the ~1B shape if bench/.cache has it
    python bench/parallel.py --clients 4 --max-tokens 128 --repeats 2 --json bench-parallel.json
    python bench/parallel.py --what join --server-root ../main   # the join gap of another checkout (before/after)

For each model, ``run_model.py --serve`` is started as a user starts it, once with
``--parallel 1`` and once with ``--parallel N`` (N = --clients). Against each, the
openai client asks the prompts one after the other (one client), then all at once
from N threads (N clients): greedy, ``max_tokens`` each, lookup off (so the gain
measured is batching's alone). The rate is answer tokens (the server's usage
counts) over wall time; the best of ``--repeats`` runs counts (the machine is
shared: other programs only ever slow a run down). Every answer must equal the
same prompt's answer asked alone on the ``--parallel 1`` server, or the bench fails.

The join gap (``--what join``): on a ``--parallel 2`` server one client streams an
answer; once it has ``--join-after`` tokens, a second client asks with a prompt of
about ``--join-tokens`` tokens (one token of answer). Reported: the longest gap
between two of the first stream's tokens while the second prompt is computed
(from its request until its answer), beside that stream's median gap before, and
the second prompt's time to its answer. A joining prompt computed in 512-token
blocks stops the running stream for a whole block; in small blocks, for a small one.

The ~1B shape is a synthetic checkpoint (random weights) with the LLaMA2 test
tokenizer: its answers are nonsense, but its speed is the speed of its shape.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["Tell me a long story about a dragon who learns to cook.",
           "Explain in detail how a steam engine works.",
           "Write a long letter to a friend about a trip to the mountains.",
           "Describe the history of the bicycle, step by step.",
           "List many ideas for a rainy weekend and explain each.",
           "Tell me about the planets of the solar system, one by one.",
           "Describe how bread is made, from the field to the table.",
           "Write a long poem about the sea."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``run_model.py --serve`` in a subprocess, its output in a file (a pipe could fill up)."""

    def __init__(self, model_args: list[str], parallel: int, log_dir: Path, root: Path = ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log_dir / f"server-p{parallel}-{self.port}.log"
        with open(self.log, "w", encoding="utf-8") as out:
            self.proc = subprocess.Popen([sys.executable, str(root / "run_model.py"), *model_args, "--serve",
                                          "--port", str(self.port), "--parallel", str(parallel), "--lookup", "off"],
                                         stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                         env=dict(os.environ, PYTHONIOENCODING="utf-8"))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server ended: see {self.log}\n" + self.log.read_text(encoding="utf-8")[-2000:])
            try:
                with urllib.request.urlopen(self.url.removesuffix("/v1") + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the server did not start in 10 minutes: see {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def ask(url: str, kind: str, prompt: str, max_tokens: int) -> tuple[str, int]:
    return ask_counted(url, kind, prompt, max_tokens)[:2]


def one_client(url: str, kind: str, prompts: list[str], max_tokens: int) -> tuple[float, dict]:
    started, tokens, answers = time.perf_counter(), 0, {}
    for p in prompts:
        answers[p], n = ask(url, kind, p, max_tokens)
        tokens += n
    return tokens / (time.perf_counter() - started), answers


def clients_at_once(url: str, kind: str, prompts: list[str], max_tokens: int) -> tuple[float, dict]:
    answers, counts, barrier = {}, {}, threading.Barrier(len(prompts) + 1)

    def one(p: str) -> None:
        barrier.wait()
        answers[p], counts[p] = ask(url, kind, p, max_tokens)

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return sum(counts.values()) / (time.perf_counter() - started), answers


def long_prompt(words: int, run: int = 0) -> str:
    """A prompt of about ``words`` words (a few more tokens): numbered sentences, no two alike; each ``run``'s differs
    from its first words on, so no run finds an earlier one's prompt in the server's cache (nothing to compute)."""
    sentences, count = [f"Day {run + 1} of the notes."], 0
    while count < words:
        sentences.append(f"Note {len(sentences) + 1}: the market opened early and the baker sold bread to "
                         f"{len(sentences) * 7 % 97} people.")
        count += len(sentences[-1].split())
    return " ".join(sentences) + " Summarize the notes."


def join_gap(url: str, kind: str, join_after: int, join_words: int, max_tokens: int, run: int = 0) -> dict:
    """One stream's token times while a second request with a long prompt joins (see the module's docstring)."""
    c = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=1200)
    times, joined = [], {}

    def joining() -> None:
        joined["at"] = time.perf_counter()
        _, _, prompt_tokens = ask_counted(url, kind, long_prompt(join_words, run), 1)
        joined["done"], joined["prompt_tokens"] = time.perf_counter(), prompt_tokens

    second = threading.Thread(target=joining)
    prompt = "Tell me a long story about a dragon who learns to cook."
    if kind == "chat":
        reply = c.chat.completions.create(model="any", temperature=0, max_tokens=max_tokens, stream=True,
                                          messages=[{"role": "user", "content": prompt}])
        texts = (ch.choices[0].delta.content if ch.choices else None for ch in reply)
    else:
        reply = c.completions.create(model="any", temperature=0, max_tokens=max_tokens, prompt=prompt, stream=True)
        texts = (ch.choices[0].text if ch.choices else None for ch in reply)
    for text in texts:
        if text:
            times.append(time.perf_counter())
            if len(times) == join_after:
                second.start()
    second.join()
    if "at" not in joined:
        raise SystemExit(f"the first answer ended after {len(times)} tokens, before --join-after {join_after}")
    before = [b - a for a, b in zip(times, times[1:]) if b <= joined["at"]]
    during = [b - a for a, b in zip(times, times[1:]) if b > joined["at"] and a < joined["done"]]
    if times[-1] < joined["done"]:   # the first answer ended before the prompt was done: the rest counts as a gap
        during.append(joined["done"] - times[-1])
    return {"prompt_tokens": joined["prompt_tokens"], "longest_gap_s": round(max(during), 3),
            "median_gap_before_s": round(sorted(before)[len(before) // 2], 4) if before else None,
            "joining_answer_s": round(joined["done"] - joined["at"], 2),
            "first_answer_ended_first": times[-1] < joined["done"]}


def ask_counted(url: str, kind: str, prompt: str, max_tokens: int) -> tuple[str, int, int]:
    """``ask`` that also returns the prompt's token count (the server's usage)."""
    c = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=1200)
    if kind == "chat":
        r = c.chat.completions.create(model="any", temperature=0, max_tokens=max_tokens,
                                      messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content, r.usage.completion_tokens, r.usage.prompt_tokens
    r = c.completions.create(model="any", temperature=0, max_tokens=max_tokens, prompt=prompt)
    return r.choices[0].text, r.usage.completion_tokens, r.usage.prompt_tokens


def bench_join(name: str, model_args: list[str], kind: str, args, log_dir: Path) -> dict:
    context = ["--max-seq-len", str(args.join_tokens + args.join_max_tokens + 256)]   # the last one given counts
    server = Server(model_args + context, 2, log_dir, Path(args.server_root).resolve())
    try:
        ask(server.url, kind, "Hello", 4)
        best = None
        for i in range(args.repeats):    # the best run counts: others on the machine only ever lengthen a gap
            run = join_gap(server.url, kind, args.join_after, int(args.join_tokens / 1.4), args.join_max_tokens, i)
            if best is None or run["longest_gap_s"] < best["longest_gap_s"]:
                best = run
    finally:
        server.stop()
    print(f"{name}: a {best['prompt_tokens']}-token prompt joining stopped the running stream for at most "
          f"{best['longest_gap_s']:.2f} s (its median gap before: {best['median_gap_before_s']} s; the joining "
          f"prompt's answer took {best['joining_answer_s']:.1f} s)"
          + (" [the running answer ended first]" if best["first_answer_ended_first"] else ""), flush=True)
    return {"model": name, "join": best, "server_root": str(Path(args.server_root).resolve())}


def numpy_gemv_gbs() -> float:
    """The machine's memory speed now: a numpy float32 GEMV of 11008x4096 (GB/s of its matrix), best of 5."""
    import numpy as np

    w, x, best = np.random.rand(11008, 4096).astype(np.float32), np.random.rand(4096).astype(np.float32), 0.0
    for _ in range(5):
        t = time.perf_counter()
        w @ x
        best = max(best, w.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def bench_model(name: str, model_args: list[str], kind: str, clients: int, max_tokens: int, repeats: int,
                log_dir: Path) -> dict:
    prompts = PROMPTS[:clients]
    result = {"model": name, "clients": clients, "max_tokens": max_tokens, "kind": kind}
    solo_answers = None
    for parallel in (1, clients):
        server = Server(model_args, parallel, log_dir)
        try:
            ask(server.url, kind, "Hello", 4)            # first request: anything still lazy is done
            one, together = 0.0, 0.0
            for _ in range(repeats):
                rate, answers = one_client(server.url, kind, prompts, max_tokens)
                if solo_answers is None:
                    solo_answers = answers
                if answers != solo_answers:
                    raise SystemExit(f"{name} --parallel {parallel}: an answer asked alone differs from --parallel 1")
                one = max(one, rate)
                rate, answers = clients_at_once(server.url, kind, prompts, max_tokens)
                if answers != solo_answers:
                    raise SystemExit(f"{name} --parallel {parallel}: an answer asked with {clients} clients at once "
                                     f"differs from it asked alone")
                together = max(together, rate)
        finally:
            server.stop()
        result[f"p{parallel}_one_client_tok_s"] = round(one, 2)
        result[f"p{parallel}_{clients}_clients_tok_s"] = round(together, 2)
        print(f"{name} --parallel {parallel}: one client {one:.1f} tok/s, {clients} clients at once "
              f"{together:.1f} tok/s", flush=True)
    result["ratio"] = round(result[f"p{clients}_{clients}_clients_tok_s"] / result["p1_one_client_tok_s"], 3)
    result["answers_identical"] = True
    print(f"{name}: {clients} clients with --parallel {clients} / one client with --parallel 1 = "
          f"{result['ratio']:.2f}x (answers identical)", flush=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--models", default="builtin,gqa-0.85b", help="builtin, gqa-0.85b (if bench/.cache has it)")
    p.add_argument("--cache", default=str(ROOT / "bench" / ".cache"), help="where synthetic shapes are")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--what", default="rate,join", help="rate (clients at once), join (the join gap), or both")
    p.add_argument("--join-tokens", type=int, default=1500, help="about how long the joining prompt is (tokens)")
    p.add_argument("--join-after", type=int, default=16, help="tokens of the running answer before the other joins")
    p.add_argument("--join-max-tokens", type=int, default=400, help="the running answer's max_tokens")
    p.add_argument("--server-root", default=str(ROOT), help="the checkout whose run_model.py serves (join only)")
    args = p.parse_args()
    results, cache = [], Path(args.cache)
    gemv = numpy_gemv_gbs()
    print(f"numpy float32 GEMV: {gemv:.1f} GB/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        what = args.what.split(",")
        for name in args.models.split(","):
            if name == "builtin":
                label, model_args = "built-in SmolLM2-135M (int4 blocks)", ["--builtin", "--max-seq-len", "1024"]
                if "rate" in what:
                    results.append(bench_model(label, model_args, "chat", args.clients, args.max_tokens,
                                               args.repeats, Path(tmp)))
                if "join" in what:
                    results.append(bench_join(label, model_args, "chat", args, Path(tmp)))
            elif name == "gqa-0.85b":
                ckpt, yml = cache / "gqa-0.85b-bfloat16.ckpt", cache / "gqa-0.85b-bfloat16.yaml"
                tests_cache = Path(os.environ.get("LLAMA_DESK_TEST_CACHE", ROOT / "tests" / ".cache"))
                tokenizer = tests_cache / "llama2" / "tokenizer.model"
                if not ckpt.is_file() or not tokenizer.is_file():
                    print(f"skipped {name}: {ckpt} or {tokenizer} is missing", flush=True)
                    continue
                label = "~0.85B GQA shape (bf16 as stored)"
                model_args = ["-V", "2", "-M", str(ckpt), "-C", str(yml), "-F", str(tokenizer), "--max-seq-len", "1024"]
                if "rate" in what:
                    results.append(bench_model(label, model_args, "text", args.clients, args.max_tokens,
                                               args.repeats, Path(tmp)))
                if "join" in what:
                    results.append(bench_join(label, model_args, "text", args, Path(tmp)))
    summary = {"numpy_gemv_gb_s": round(gemv, 1), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cpu_count": os.cpu_count(), "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
