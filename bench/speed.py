"""Speed and memory of every backend and weight format on one model, beside this machine's limits and llama.cpp.

    python bench/speed.py                                   # a TinyLlama-1.1B-shaped fp16 model (written once)
    python bench/speed.py --dtype bfloat16                  # the same shape stored in bf16 (LLaMA3's format)
    python bench/speed.py -C model.yaml -M model.ckpt       # your own checkpoint
    python bench/speed.py --only cpu:stored,cpu:int8        # a subset

Everything is measured in ONE run, each configuration in its own process (so
load time and peak memory are its own): the memory bandwidth of a numpy
float32 GEMV (the roofline a decode step is bound by), our backends, and
llama.cpp on the same weights (F16 and Q8_0 GGUF files written from our
checkpoint) when ``llama-cpp-python`` is installed; without it, it says how
to get it. Reported per configuration: load time, time to first token (a
32-token prompt), prefill tokens/s (a 512-token prompt), decode tokens/s and
the GB/s of weights that implies, peak RSS, and ratios to the numpy roofline
and to llama.cpp. The per-token cost model (bytes and multiply-adds per
operation, and the lower bound bytes / bandwidth) is printed beside them.
Speeds are ratios within this run: this kind of machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import hashlib
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

CACHE = HERE / ".cache"
DEFAULT_RUNS = ("cpu:stored", "cpu:int8", "mindspore:stored", "llama.cpp:F16", "llama.cpp:Q8_0")
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


def measure_ours(config: str, checkpoint: str, backend: str, fmt: str, threads: int | None, prompt_len: int,
                 decode_tokens: int) -> dict:
    from engine import ExecutorOptions, ModelSource, load_engine
    from engine.memory import peak_rss_bytes

    started = time.perf_counter()
    engine = load_engine(ModelSource(version=2, config=config, checkpoint=checkpoint, need_tokenizer=False),
                         ExecutorOptions(backend=backend, weight_format="auto" if fmt == "stored" else fmt,
                                         threads=threads, max_seq_len=prompt_len + decode_tokens + 64))
    load_s = time.perf_counter() - started
    ex, vocab = engine.executor, engine.config.vocab_size
    prompt = _prompt(vocab, prompt_len)
    ttft = min(_timed(lambda: ex.prefill(prompt[:32], 0)) for _ in range(2))
    prefill_s = min(_timed(lambda: ex.prefill(prompt, 0)) for _ in range(2))
    ex.prefill(prompt[:32], 0)
    steps = []
    for i in range(decode_tokens):
        steps.append(_timed(lambda: ex.decode(prompt[i], 32 + i)))
    decode_s = float(np.median(steps[2:]))
    result = {"load_s": load_s, "ttft_s": ttft, "prefill_tokens_per_s": prompt_len / prefill_s,
              "decode_tokens_per_s": 1 / decode_s, "peak_rss_bytes": peak_rss_bytes(),
              "weight_format": engine.info.weight_format}
    engine.close()
    return result


def measure_llama_cpp(gguf_path: str, threads: int | None, prompt_len: int, decode_tokens: int, vocab: int) -> dict:
    from llama_cpp import Llama

    from engine.memory import peak_rss_bytes

    threads = threads or os.cpu_count()
    started = time.perf_counter()
    llm = Llama(model_path=gguf_path, n_ctx=prompt_len + decode_tokens + 64, n_threads=threads,
                n_threads_batch=threads, n_batch=512, n_ubatch=512, verbose=False)
    llm.eval([1])
    load_s = time.perf_counter() - started
    prompt = _prompt(vocab, prompt_len)

    def run(tokens):
        llm.reset()
        llm.eval(tokens)
    ttft = min(_timed(lambda: run(prompt[:32])) for _ in range(2))
    prefill_s = min(_timed(lambda: run(prompt)) for _ in range(2))
    run(prompt[:32])
    steps = [_timed(lambda: llm.eval([prompt[i]])) for i in range(decode_tokens)]
    return {"load_s": load_s, "ttft_s": ttft, "prefill_tokens_per_s": prompt_len / prefill_s,
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


def _ensure_model(args) -> tuple[Path, Path]:
    if args.model:
        return Path(args.config), Path(args.model)
    CACHE.mkdir(exist_ok=True)
    ckpt = CACHE / f"tinyllama-{args.dtype}.ckpt"
    if not ckpt.exists():
        print(f"writing a TinyLlama-shaped {args.dtype} checkpoint to {ckpt} (once) ...", file=sys.stderr)
        from synthetic_checkpoint import write
        write(None, ckpt, shape="tinyllama", dtype_name=args.dtype)
    return ckpt.with_suffix(".yaml"), ckpt


def _ensure_gguf(config: Path, ckpt: Path, kind: str) -> Path:
    """The GGUF copy of ``ckpt`` for llama.cpp, written once; named after the source file's path, size and
    time, so two checkpoints that share a file name (``model.safetensors``) never share a copy."""
    stat = ckpt.stat()
    source = hashlib.sha256(f"{ckpt.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode("utf-8")).hexdigest()[:10]
    out = CACHE / f"{ckpt.stem}-{source}-{kind}.gguf"
    if not out.exists():
        print(f"writing {out.name} for llama.cpp (once) ...", file=sys.stderr)
        from gguf_export import export
        export(ckpt, config, out, kind)
    return out


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _run_worker(json.loads(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-C", "--config")
    p.add_argument("-M", "--model")
    p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    p.add_argument("--only", help="comma-separated backend:format list (default: " + ",".join(DEFAULT_RUNS) + ")")
    p.add_argument("--threads", type=int)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    from engine.config import load_config
    from cost_model import bytes_per_token, decode_cost, table

    config, ckpt = _ensure_model(args)
    cfg = load_config(config)
    runs = args.only.split(",") if args.only else list(DEFAULT_RUNS)
    have_llama_cpp = __import__("importlib").util.find_spec("llama_cpp") is not None
    bandwidth = [_worker("bandwidth")["GBps"]]
    read_s = file_read_seconds(ckpt)
    results = {}
    for run in runs:
        backend, fmt = run.split(":")
        print(f"measuring {run} ...", file=sys.stderr, flush=True)
        if backend == "llama.cpp":
            if not have_llama_cpp:
                results[run] = {"skipped": f"llama-cpp-python is not installed: {LLAMA_CPP_HINT}"}
                continue
            results[run] = _worker("llama.cpp", gguf_path=str(_ensure_gguf(config, ckpt, fmt)), threads=args.threads,
                                   prompt_len=args.prompt, decode_tokens=args.decode, vocab=cfg.vocab_size)
        else:
            results[run] = _worker("ours", config=str(config), checkpoint=str(ckpt), backend=backend, fmt=fmt,
                                   threads=args.threads, prompt_len=args.prompt, decode_tokens=args.decode)
        bandwidth.append(_worker("bandwidth")["GBps"])
    roofline = float(np.median(bandwidth))
    file_bytes = ckpt.stat().st_size
    stored = args.dtype if not args.model else "float16"
    for run, r in results.items():
        if "decode_tokens_per_s" not in r:
            continue
        backend, fmt = run.split(":")
        wf = {"F16": "float16", "Q8_0": "int8", "stored": stored, "int8": "int8"}[fmt]
        if backend == "mindspore":
            wf = "float32"
        per_token = bytes_per_token(cfg, wf, 32 + args.decode // 2)
        r["weight_bytes_per_token"] = per_token
        r["GBps"] = per_token * r["decode_tokens_per_s"] / 1e9
        r["vs_numpy_roofline"] = r["GBps"] / roofline
        r["peak_rss_vs_file"] = r["peak_rss_bytes"] / file_bytes
        r["load_vs_file_read"] = r["load_s"] / read_s if read_s > 0 else None
    for ours, peer in (("cpu:stored", "llama.cpp:F16"), ("cpu:int8", "llama.cpp:Q8_0")):
        a, b = results.get(ours, {}), results.get(peer, {})
        if "decode_tokens_per_s" in a and "decode_tokens_per_s" in b:
            a["vs_llama_cpp"] = {"decode": a["decode_tokens_per_s"] / b["decode_tokens_per_s"],
                                 "prefill": a["prefill_tokens_per_s"] / b["prefill_tokens_per_s"],
                                 "ttft": b["ttft_s"] / a["ttft_s"]}
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "system": platform.system()},
        "model": {"config": str(config), "checkpoint": str(ckpt), "file_bytes": file_bytes,
                  "parameters": int(sum(np.prod(s) for s in __import__("engine.weights.names", fromlist=["x"]).expected_shapes(cfg).values()))},
        "numpy_gemv_GBps": {"median": roofline, "samples": bandwidth},
        "file_read_s": read_s,
        "cost_model_stored": table(decode_cost(cfg, stored, 32 + args.decode // 2), roofline),
        "cost_model_int8": table(decode_cost(cfg, "int8", 32 + args.decode // 2), roofline),
        "results": results,
    }
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def _print(report: dict) -> None:
    gb = 1e9
    m = report["model"]
    print(f"model: {m['checkpoint']} ({m['parameters'] / 1e9:.2f}e9 parameters, {m['file_bytes'] / gb:.2f} GB file)")
    print(f"numpy float32 GEMV: {report['numpy_gemv_GBps']['median']:.1f} GB/s (samples "
          + ", ".join(f"{b:.1f}" for b in report["numpy_gemv_GBps"]["samples"]) + f"); file read once: "
          f"{report['file_read_s']:.2f} s")
    print(f"{'run':18} {'decode tok/s':>12} {'GB/s':>6} {'xroof':>6} {'prefill tok/s':>13} {'ttft s':>7} "
          f"{'load s':>7} {'peak RSS GB':>11} {'RSS/file':>8}  vs llama.cpp (decode, prefill)")
    for run, r in report["results"].items():
        if "decode_tokens_per_s" not in r:
            print(f"{run:18} {r.get('skipped') or r.get('error')}")
            continue
        peer = r.get("vs_llama_cpp")
        peer_text = f"{peer['decode']:.2f}x, {peer['prefill']:.2f}x" if peer else ""
        print(f"{run:18} {r['decode_tokens_per_s']:12.1f} {r['GBps']:6.1f} {r['vs_numpy_roofline']:6.2f} "
              f"{r['prefill_tokens_per_s']:13.1f} {r['ttft_s']:7.2f} {r['load_s']:7.2f} "
              f"{r['peak_rss_bytes'] / gb:11.2f} {r['peak_rss_vs_file']:8.2f}  {peer_text}")
    print("per-token cost (stored weights):")
    for row in report["cost_model_stored"]:
        print(f"  {row['operation']:28} {row['MB_read']:10.1f} MB {row['M_multiply_adds']:10.1f} M MACs "
              f"{row['lower_bound_ms']:8.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
