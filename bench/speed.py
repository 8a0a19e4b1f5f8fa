"""Speed and memory of every backend and weight format on one model, beside this machine's limits and llama.cpp.

    python bench/speed.py                       # TinyLlama-1.1B shape in fp16, then a 0.85B GQA shape in bf16
    python bench/speed.py --shape gqa-0.85b:bfloat16 --repeat 2   # one shape, best of two runs each side
    python bench/speed.py --builtin             # the built-in model, llama.cpp on its very Q4_1 file
    python bench/speed.py -C model.yaml -M model.ckpt       # your own checkpoint
    python bench/speed.py --only cpu:stored,cpu:int8        # a subset

Everything is measured in ONE run, each configuration in its own process (so
load time and peak memory are its own): the memory bandwidth of a numpy
float32 GEMV (the roofline a decode step is bound by), our backends, and
llama.cpp on the same weights (F16 and Q8_0 GGUF files written from our
checkpoint) when ``llama-cpp-python`` is installed; without it, it says how
to get it; int4 is compared with llama.cpp's Q4_0 (and the built-in model
with its own Q4_1 file). Reported per configuration: load time, time to first
token (a 32-token prompt), prefill tokens/s (512- and 2000-token prompts),
decode tokens/s and
the GB/s of weights that implies, peak RSS, and ratios to the numpy roofline
and to llama.cpp. The per-token cost model (bytes and multiply-adds per
operation, and the lower bound bytes / bandwidth) is printed beside them.
Speeds are ratios within this run: this kind of machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# Built models (checkpoints, GGUF copies): LLAMA_DESK_BENCH_CACHE or --cache shares one folder between checkouts.
CACHE = Path(os.environ.get("LLAMA_DESK_BENCH_CACHE") or HERE / ".cache")
DEFAULT_RUNS = ("cpu:stored", "cpu:int8", "cpu:int4", "mindspore:stored", "llama.cpp:F16", "llama.cpp:Q8_0",
                "llama.cpp:Q4_0")
DEFAULT_SHAPES = ("tinyllama:float16", "gqa-0.85b:bfloat16")
PEERS = (("cpu:stored", "llama.cpp:F16"), ("cpu:int8", "llama.cpp:Q8_0"), ("cpu:int4", "llama.cpp:Q4_0"),
         ("cpu:int4", "llama.cpp:Q4_1"))
LLAMA_CPP_HINT = ('pip install "llama-cpp-python==0.3.36" (builds llama.cpp from source, ~7 minutes; '
                  'set CMAKE_ARGS="-DGGML_NATIVE=ON" for this CPU)')


# -- measurements (run in a worker process) -----------------------------------------------------------

def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def numpy_gemv_bandwidth(gigabytes: float = 1.0, repeats: int = 7) -> float:
    """GB/s of a large float32 matrix-vector product: what streaming weights from memory costs here."""
    matrix = np.random.default_rng(0).standard_normal((int(gigabytes * 1e9 / 4 / 4096), 4096), dtype=np.float32)
    vector = np.ones(4096, np.float32)
    return matrix.nbytes / min(_timed(lambda: matrix @ vector) for _ in range(repeats)) / 1e9


def file_read_seconds(path: Path) -> float:
    """Reading the checkpoint once (from the OS cache when it is warm), the yardstick for load time."""
    buf = bytearray(1 << 24)
    view = memoryview(buf)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass
    return time.perf_counter() - start


def _prompt(vocab: int, n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(1).integers(300, min(vocab, 30000), n)]


def _prefill_rates(run, prompt: list[int], lengths: list[int], runs: int = 2) -> dict:
    return {str(n): n / min(_timed(lambda: run(prompt[:n])) for _ in range(runs)) for n in lengths}


def measure_ours(config: str, checkpoint: str, backend: str, fmt: str, threads: int | None, prompt_lens: list[int],
                 decode_tokens: int, builtin: bool = False, prefill_runs: int = 2) -> dict:
    from engine import ExecutorOptions, ModelSource, load_engine
    from engine.memory import peak_rss_bytes

    longest = max(prompt_lens)
    started = time.perf_counter()
    model = ModelSource(builtin=True, need_tokenizer=False) if builtin else \
        ModelSource(version=2, config=config, checkpoint=checkpoint, need_tokenizer=False)
    engine = load_engine(model, ExecutorOptions(backend=backend, weight_format=fmt, threads=threads,
                                                max_seq_len=max(longest, 32 + decode_tokens) + 64))
    load_s = time.perf_counter() - started
    ex, vocab = engine.executor, engine.config.vocab_size
    prompt = _prompt(vocab, longest)
    ttft = min(_timed(lambda: ex.prefill(prompt[:32], 0)) for _ in range(2))
    prefill = _prefill_rates(lambda ids: ex.prefill(ids, 0), prompt, prompt_lens, prefill_runs)
    ex.prefill(prompt[:32], 0)
    steps = []
    for i in range(decode_tokens):
        steps.append(_timed(lambda: ex.decode(prompt[i], 32 + i)))
    decode_s = float(np.median(steps[2:]))
    result = {"load_s": load_s, "ttft_s": ttft, "prefill_tokens_per_s": prefill,
              "decode_tokens_per_s": 1 / decode_s, "peak_rss_bytes": peak_rss_bytes(),
              "weight_format": engine.info.weight_format}
    engine.close()
    return result


def measure_llama_cpp(gguf_path: str, threads: int | None, prompt_lens: list[int], decode_tokens: int,
                      vocab: int, prefill_runs: int = 2) -> dict:
    from llama_cpp import Llama

    from engine.memory import peak_rss_bytes

    threads = threads or os.cpu_count()
    longest = max(prompt_lens)
    started = time.perf_counter()
    llm = Llama(model_path=gguf_path, n_ctx=max(longest, 32 + decode_tokens) + 64, n_threads=threads,
                n_threads_batch=threads, n_batch=512, n_ubatch=512, verbose=False)
    llm.eval([1])
    load_s = time.perf_counter() - started
    prompt = _prompt(vocab, longest)

    def run(tokens):
        llm.reset()
        llm.eval(tokens)
    ttft = min(_timed(lambda: run(prompt[:32])) for _ in range(2))
    prefill = _prefill_rates(run, prompt, prompt_lens, prefill_runs)
    run(prompt[:32])
    steps = [_timed(lambda: llm.eval([prompt[i]])) for i in range(decode_tokens)]
    return {"load_s": load_s, "ttft_s": ttft, "prefill_tokens_per_s": prefill,
            "decode_tokens_per_s": 1 / float(np.median(steps[2:])), "peak_rss_bytes": peak_rss_bytes()}


# -- orchestration ---------------------------------------------------------------------------------

def _worker(kind: str, **kw) -> dict:
    """Run one measurement in a fresh process; its JSON is the last line of stdout."""
    cmd = [sys.executable, __file__, "--worker", json.dumps({"kind": kind, **kw})]
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", env=dict(os.environ, GLOG_v="3"))
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_worker(spec: dict) -> None:
    kind = spec.pop("kind")
    if kind == "bandwidth":
        out = {"GBps": numpy_gemv_bandwidth()}
    elif kind == "ours":
        out = measure_ours(**spec)
    else:
        out = measure_llama_cpp(**spec)
    print(json.dumps(out))


def _ensure_model(shape: str, dtype: str) -> tuple[Path, Path]:
    CACHE.mkdir(exist_ok=True)
    ckpt = CACHE / f"{shape}-{dtype}.ckpt"
    if not ckpt.exists():
        print(f"writing a {shape}-shaped {dtype} checkpoint to {ckpt} (once) ...", file=sys.stderr)
        from synthetic_checkpoint import write
        write(None, ckpt, shape=shape, dtype_name=dtype)
    return ckpt.with_suffix(".yaml"), ckpt


def _ensure_gguf(config: Path, ckpt: Path, kind: str, builtin: bool, direct: bool = False) -> Path:
    if builtin and kind == "Q4_1":
        from engine.builtin_model import find_builtin_gguf
        return find_builtin_gguf()     # the built-in model's own file, as shipped
    from gguf_export import cached_gguf
    return cached_gguf(ckpt, config, kind, CACHE, direct=direct)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """-C/-M, --builtin, --shape: which models a bench runs on (``chosen_models``)."""
    p.add_argument("-C", "--config")
    p.add_argument("-M", "--model")
    p.add_argument("--builtin", action="store_true", help="the built-in model (llama.cpp: its own Q4_1 file)")
    p.add_argument("--shape", action="append", help="shape:dtype of a synthetic checkpoint (default: "
                   + ", ".join(DEFAULT_SHAPES) + ")")


def chosen_models(args) -> list[tuple[Path, Path, str]]:
    """(config, checkpoint, stored dtype) of each model ``add_model_arguments`` named (synthetic ones built once)."""
    if args.builtin:
        from engine.builtin_model import builtin_model_dir
        folder = builtin_model_dir()
        return [(folder / "config.yaml", folder / "model.safetensors", "float16")]
    if args.model:
        return [(Path(args.config), Path(args.model), "float16")]
    return [(*_ensure_model(*spec.split(":")), spec.split(":")[1]) for spec in (args.shape or DEFAULT_SHAPES)]


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _run_worker(json.loads(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--only", help="comma-separated backend:format list (default: " + ",".join(DEFAULT_RUNS) + ")")
    p.add_argument("--threads", type=int)
    p.add_argument("--prompt", default="512,2000", help="prefill prompt lengths (comma-separated)")
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration; the best counts")
    p.add_argument("--prefill-runs", type=int, default=2, help="timed prefills of each length in a run (the "
                   "fastest counts); 1 for 7-8B models, whose 2,000-token prefill takes minutes")
    p.add_argument("--gguf-direct", action="store_true", help="write llama.cpp's Q4_0 copy straight from the "
                   "checkpoint (output matrix in Q8_0), without the F16 copy a 7-8B model cannot spare RAM for")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--cache", type=Path, help="folder of the built models (default: bench/.cache, or "
                   "$LLAMA_DESK_BENCH_CACHE); several checkouts can share one")
    args = p.parse_args()
    if args.cache:
        global CACHE
        CACHE = args.cache.resolve()
        os.environ["LLAMA_DESK_BENCH_CACHE"] = str(CACHE)   # the worker processes build nothing, but agree
    reports = []
    for config, ckpt, stored in chosen_models(args):
        reports.append(_measure_model(args, config, ckpt, stored))
        _print(reports[-1])
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1), encoding="utf-8")
    return 0


def _best(results: list[dict]) -> dict:
    """The best of several runs of one configuration (fastest decode; each prefill length on its own)."""
    ok = [r for r in results if "decode_tokens_per_s" in r]
    if not ok:
        return results[0]
    best = dict(max(ok, key=lambda r: r["decode_tokens_per_s"]))
    best["prefill_tokens_per_s"] = {n: max(r["prefill_tokens_per_s"][n] for r in ok)
                                    for n in best["prefill_tokens_per_s"]}
    best["ttft_s"] = min(r["ttft_s"] for r in ok)
    best["decode_runs"] = [round(r["decode_tokens_per_s"], 2) for r in ok]
    return best


def _measure_model(args, config: Path, ckpt: Path, stored: str) -> dict:
    from engine.config import load_config
    from cost_model import bytes_per_token, decode_cost, table

    cfg = load_config(config)
    lengths = [int(n) for n in args.prompt.split(",")]
    runs = args.only.split(",") if args.only else list(DEFAULT_RUNS) + (["llama.cpp:Q4_1"] if args.builtin else [])
    have_llama_cpp = __import__("importlib").util.find_spec("llama_cpp") is not None
    bandwidth = [_worker("bandwidth")["GBps"]]
    read_s = file_read_seconds(ckpt)
    results, tries = {}, {}
    for run in runs:
        if run.startswith("llama.cpp:") and not have_llama_cpp:
            results[run] = {"skipped": f"llama-cpp-python is not installed: {LLAMA_CPP_HINT}"}
        else:
            tries[run] = []
    # Round after round, every configuration once per round: a shared machine's memory bandwidth drifts over
    # minutes, and repeats grouped per configuration gave one side the quiet minutes (llama.cpp once read 1.43x
    # numpy's GEMV while ours, measured just before it, read 0.96x; interleaved, they were within 10%).
    for attempt in range(args.repeat):
        for run in tries:
            backend, fmt = run.split(":")
            print(f"measuring {run} ({attempt + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            if backend == "llama.cpp":
                gguf_path = _ensure_gguf(config, ckpt, fmt, args.builtin, args.gguf_direct)
                tries[run].append(_worker("llama.cpp", gguf_path=str(gguf_path), threads=args.threads,
                                          prompt_lens=lengths, decode_tokens=args.decode, vocab=cfg.vocab_size,
                                          prefill_runs=args.prefill_runs))
            else:
                tries[run].append(_worker("ours", config=str(config), checkpoint=str(ckpt), backend=backend, fmt=fmt,
                                          threads=args.threads, prompt_lens=lengths, decode_tokens=args.decode,
                                          builtin=args.builtin, prefill_runs=args.prefill_runs))
            bandwidth.append(_worker("bandwidth")["GBps"])
    results.update({run: _best(t) for run, t in tries.items()})
    results = {run: results[run] for run in runs}   # the order asked for
    roofline = float(np.median(bandwidth))
    file_bytes = ckpt.stat().st_size
    from engine.backends.cpu.quantize import INT4_LAYOUT
    for run, r in results.items():
        if "decode_tokens_per_s" not in r:
            continue
        backend, fmt = run.split(":")
        wf = {"F16": "float16", "Q8_0": "int8", "Q4_0": "q4_0", "Q4_1": "q4_1", "stored": stored, "int8": "int8",
              "int4": "q4_1" if args.builtin else INT4_LAYOUT}[fmt]   # the built-in: its own Q4_1 blocks
        if backend == "mindspore":
            wf = "float32"
        # the vocabulary matrix: ours under int4 in 8 bits; llama.cpp's 4-bit files keep it in Q6_K (the built-in's: Q8_0)
        head = {"int4": "int8", "Q4_0": "q6_k", "Q4_1": "q6_k"}.get(fmt)
        head = "int8" if head and args.builtin else head
        per_token = bytes_per_token(cfg, wf, 32 + args.decode // 2, head_format=head)
        r["weight_bytes_per_token"] = per_token
        r["GBps"] = per_token * r["decode_tokens_per_s"] / 1e9
        r["vs_numpy_roofline"] = r["GBps"] / roofline
        r["peak_rss_vs_file"] = r["peak_rss_bytes"] / file_bytes
        r["load_vs_file_read"] = r["load_s"] / read_s if read_s > 0 else None
    for ours, peer in PEERS:
        a, b = results.get(ours, {}), results.get(peer, {})
        if "decode_tokens_per_s" in a and "decode_tokens_per_s" in b:
            a.setdefault("vs_llama_cpp", {})[peer] = {
                "decode": a["decode_tokens_per_s"] / b["decode_tokens_per_s"],
                "prefill": {n: a["prefill_tokens_per_s"][n] / b["prefill_tokens_per_s"][n]
                            for n in b["prefill_tokens_per_s"]},
                "ttft": b["ttft_s"] / a["ttft_s"]}
    from engine.weights.names import expected_shapes

    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "system": platform.system(), "load": _load_average()},
        "model": {"config": str(config), "checkpoint": str(ckpt), "file_bytes": file_bytes,
                  "parameters": int(sum(np.prod(s) for s in expected_shapes(cfg).values()))},
        "numpy_gemv_GBps": {"median": roofline, "samples": bandwidth},
        "file_read_s": read_s,
        "cost_model_stored": table(decode_cost(cfg, stored, 32 + args.decode // 2), roofline),
        "cost_model_int8": table(decode_cost(cfg, "int8", 32 + args.decode // 2), roofline),
        "results": results,
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows
        return None


def _print(report: dict) -> None:
    gb = 1e9
    m = report["model"]
    print(f"model: {m['checkpoint']} ({m['parameters'] / 1e9:.2f}e9 parameters, {m['file_bytes'] / gb:.2f} GB file); "
          f"load average {report['machine']['load']}")
    print(f"numpy float32 GEMV: {report['numpy_gemv_GBps']['median']:.1f} GB/s (samples "
          + ", ".join(f"{b:.1f}" for b in report["numpy_gemv_GBps"]["samples"]) + f"); file read once: "
          f"{report['file_read_s']:.2f} s")
    print(f"{'run':16} {'decode tok/s':>12} {'GB/s':>6} {'xroof':>6} {'prefill tok/s':>20} {'ttft s':>7} "
          f"{'load s':>7} {'RSS GB':>7}  vs llama.cpp: decode, prefill")
    for run, r in report["results"].items():
        if "decode_tokens_per_s" not in r:
            print(f"{run:16} {r.get('skipped') or r.get('error')}")
            continue
        prefill = " / ".join(f"{v:.0f}" for v in r["prefill_tokens_per_s"].values())
        peers = "; ".join(f"{peer.split(':')[1]} {v['decode']:.2f}x, "
                          + "/".join(f"{x:.2f}x" for x in v["prefill"].values())
                          for peer, v in r.get("vs_llama_cpp", {}).items())
        print(f"{run:16} {r['decode_tokens_per_s']:12.1f} {r['GBps']:6.1f} {r['vs_numpy_roofline']:6.2f} "
              f"{prefill:>20} {r['ttft_s']:7.2f} {r['load_s']:7.2f} {r['peak_rss_bytes'] / gb:7.2f}  {peers}")
    runs = {run: r["decode_runs"] for run, r in report["results"].items() if len(r.get("decode_runs", ())) > 1}
    if runs:
        print("decode tok/s of each round (rounds in turns): "
              + "; ".join(f"{run} " + ", ".join(f"{v:.1f}" for v in values) for run, values in runs.items()))
    print("per-token cost (stored weights):")
    for row in report["cost_model_stored"]:
        print(f"  {row['operation']:28} {row['MB_read']:10.1f} MB {row['M_multiply_adds']:10.1f} M MACs "
              f"{row['lower_bound_ms']:8.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
