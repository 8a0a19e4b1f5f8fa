"""Decode speed of several decoders alive at once, each in its own process, taking bursts in turns.

    python bench/decode_turns.py                        # TinyLlama fp16, 0.85B GQA bf16: cpu:stored vs llama.cpp:F16
    python bench/decode_turns.py --only cpu:int4,llama.cpp:Q4_0,cpu:int8,llama.cpp:Q8_0 --rounds 30
    python bench/decode_turns.py -C model.yaml -M model.ckpt --only cpu:int4,llama.cpp:Q4_0 --gguf-direct   # 7-8B
    python bench/decode_turns.py --only cpu:int4,cpu:int4@../main,llama.cpp:Q4_0   # a change against another checkout
    python bench/decode_turns.py --together             # both default shapes' decoders alive at once, in the same turns

Why a second decode benchmark beside ``speed.py``: on a shared machine (this
VM among them) the memory's speed drifts by a third within seconds to minutes
(a numpy GEMV read 25-39 GB/s in one run), so two decoders measured one after
the other compare two different machines, however many times the pair is
repeated. Here every decoder is loaded in its own process (its own allocator,
pages and thread pool, as a user would run it) and waits, and each round
every one decodes a short burst while the others sleep, the order alternating
from round to round. A round's ratio of median step times compares the same
few seconds; the median of those ratios over the rounds is the figure.
Positions advance the same way on every side (a 32-token prompt, then one
position a step), so the KV caches grow alike. All decoders are resident at
once: at 7-8B compare the quantized formats (two 16 GB copies do not fit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import speed  # noqa: E402  (the built models, their GGUF copies and the peer pairs are speed.py's)

DEFAULT_RUNS = ("cpu:stored", "llama.cpp:F16")
PROMPT = 32


def _decoder(spec: dict):
    """Load one decoder; return its step function (decode the next position) after the 32-token prompt."""
    prompt = speed._prompt(spec["vocab"], PROMPT + spec["steps"])
    position = [PROMPT]
    if spec["backend"] == "llama.cpp":
        from llama_cpp import Llama
        threads = spec["threads"] or os.cpu_count()
        llm = Llama(model_path=spec["gguf"], n_ctx=PROMPT + spec["steps"] + 16, n_threads=threads,
                    n_threads_batch=threads, n_batch=512, n_ubatch=512, verbose=False)
        llm.eval(prompt[:PROMPT])

        def step():
            llm.eval([prompt[position[0]]])
            position[0] += 1
        return step
    from engine import ExecutorOptions, ModelSource, load_engine
    model = ModelSource(builtin=True, need_tokenizer=False) if spec["builtin"] else \
        ModelSource(version=2, config=spec["config"], checkpoint=spec["checkpoint"], need_tokenizer=False)
    engine = load_engine(model, ExecutorOptions(backend=spec["backend"], weight_format=spec["format"],
                                                threads=spec["threads"], max_seq_len=PROMPT + spec["steps"] + 16))
    executor = engine.executor
    executor.prefill(prompt[:PROMPT], 0)

    def step():
        executor.decode(prompt[position[0]], position[0])
        position[0] += 1
    return step


def _serve(spec: dict) -> None:
    """The worker: load, say ready, then time a burst of steps for every line read (one JSON list a burst)."""
    step = _decoder(spec)
    step()                                  # the first step touches what the prompt did not
    print("ready", flush=True)
    for _ in sys.stdin:
        times = []
        for _ in range(spec["burst"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


def _start(spec: dict) -> subprocess.Popen:
    script = Path(spec["checkout"]) / "bench" / Path(__file__).name if spec.get("checkout") else Path(__file__)
    proc = subprocess.Popen([sys.executable, str(script), "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, encoding="utf-8", env=dict(os.environ, GLOG_v="3"))
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc
    proc.wait()
    raise RuntimeError(f"{spec['run']}: the worker stopped before it was ready (exit code {proc.returncode})")


def measure(config: Path, ckpt: Path, runs: list[str], args) -> dict:
    """Rounds of bursts in turns; per run the median step of each round."""
    return measure_together([(config, ckpt)], runs, args)[0]


def measure_together(models: list[tuple[Path, Path]], runs: list[str], args) -> list[dict]:
    """``measure`` for several models' decoders all alive at once, bursts in turns: their ratios come from the
    same moments (two shapes measured one after the other compare two states of a drifting machine)."""
    from engine.config import load_config

    steps = args.rounds * args.burst + 1
    workers, order = {}, []                     # (model index, run) -> worker process
    try:
        for index, (config, ckpt) in enumerate(models):
            vocab = load_config(config).vocab_size
            for run in runs:                     # loaded one at a time: loads do not compete
                decoder, _, checkout = run.partition("@")       # "@folder": that checkout's code (a change's A/B)
                backend, fmt = decoder.split(":")
                spec = {"run": run, "backend": backend, "format": fmt, "threads": args.threads, "vocab": vocab,
                        "checkout": str(Path(checkout).resolve()) if checkout else "",
                        "steps": steps, "burst": args.burst, "builtin": args.builtin, "config": str(config),
                        "checkpoint": str(ckpt)}
                if backend == "llama.cpp":
                    spec["gguf"] = str(speed._ensure_gguf(config, ckpt, fmt, args.builtin, args.gguf_direct))
                print(f"loading {run} ({Path(ckpt).name}) ...", file=sys.stderr, flush=True)
                workers[index, run] = _start(spec)
                order.append((index, run))
        steps_of = {key: [] for key in order}
        for r in range(args.rounds):
            for key in (order if r % 2 == 0 else order[::-1]):
                proc = workers[key]
                proc.stdin.write("go\n")
                proc.stdin.flush()
                steps_of[key].append(statistics.median(json.loads(proc.stdout.readline())))
    finally:
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()
    return [_result(ckpt, {run: steps_of[index, run] for run in runs}, args)
            for index, (_, ckpt) in enumerate(models)]


def _result(ckpt: Path, rounds: dict, args) -> dict:
    result = {"model": str(ckpt), "rounds": args.rounds, "burst": args.burst,
              "median_step_s": {run: statistics.median(v) for run, v in rounds.items()},
              "best_round_step_s": {run: min(v) for run, v in rounds.items()}, "round_steps_s": rounds, "vs": {}}
    pairs = [(ours, peer) for ours, peer in speed.PEERS if peer in rounds
             for ours in [ours] + [run for run in rounds if run.startswith(ours + "@")]]
    pairs += [(run.partition("@")[0], run) for run in rounds if "@" in run and run.partition("@")[0] in rounds]
    for ours, peer in pairs:
        if ours in rounds:
            ratios = sorted(p / o for o, p in zip(rounds[ours], rounds[peer]))
            quart = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            result["vs"][f"{ours} / {peer}"] = {"median": statistics.median(ratios), "quartiles": [quart[0], quart[2]],
                                               "best_rounds": min(rounds[peer]) / min(rounds[ours])}
    return result


def _print_between(results: list[dict]) -> None:
    """Each run's step time on each model against the first model's, round by round (same moments)."""
    first = results[0]
    for other in results[1:]:
        for run in first["round_steps_s"]:
            ratio = statistics.median(o / f for f, o in zip(first["round_steps_s"][run], other["round_steps_s"][run]))
            print(f"  {run}: a step of {Path(other['model']).name} takes {ratio:.3f}x one of "
                  f"{Path(first['model']).name} (median of the rounds' ratios)")


def _print(result: dict) -> None:
    print(f"model: {result['model']}: {result['rounds']} rounds of {result['burst']} decode steps, in turns")
    for run, step in result["median_step_s"].items():
        print(f"  {run:16} {1 / step:7.1f} tokens/s (median of the rounds' median steps; best round "
              f"{1 / result['best_round_step_s'][run]:.1f})")
    for pair, v in result["vs"].items():
        print(f"  {pair}: decode {v['median']:.3f}x (per-round ratios, median; quartiles {v['quartiles'][0]:.3f}-"
              f"{v['quartiles'][1]:.3f}); best round against best round {v['best_rounds']:.3f}x")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _serve(json.loads(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed.add_model_arguments(p)
    p.add_argument("--only", help="comma-separated backend:format list (default: " + ",".join(DEFAULT_RUNS) + ")")
    p.add_argument("--threads", type=int)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--burst", type=int, default=8, help="decode steps per turn (their median counts)")
    p.add_argument("--gguf-direct", action="store_true", help="llama.cpp's Q4_0 copy straight from the checkpoint")
    p.add_argument("--together", action="store_true", help="every model's decoders alive at once, all in the same "
                   "turns (ratios of the shapes from the same moments; needs the memory for all of them)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    runs = args.only.split(",") if args.only else list(DEFAULT_RUNS)
    if any(r.startswith("llama.cpp:") for r in runs) and __import__("importlib").util.find_spec("llama_cpp") is None:
        print(f"llama-cpp-python is not installed: {speed.LLAMA_CPP_HINT}", file=sys.stderr)
        return 1
    models = [(config, ckpt) for config, ckpt, _ in speed.chosen_models(args)]
    if args.together:
        results = measure_together(models, runs, args)
        for result in results:
            _print(result)
        _print_between(results)
    else:
        results = []
        for config, ckpt in models:
            results.append(measure(config, ckpt, runs, args))
            _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
