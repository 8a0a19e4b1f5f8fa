"""Decode speed as a fraction of what this machine's memory allows, with a peer measured in the same run.

    python bench/decode_speed.py                    # the built-in model
    python bench/decode_speed.py -V 2 -C configs/predict_llama2_7b.yaml -M llama2_7b.ckpt --max-seq-len 512
    python bench/decode_speed.py --backend mindformers   # any backend (default: auto)

Decode reads every weight once per token, so tokens/s <= bandwidth / weight bytes.
We measure (1) the bandwidth of a large numpy float32 GEMV, (2) a bare numpy
chain of the model's matmuls with the same shapes (the peer: no attention,
no framework), and (3) our executor's decode step; and report each as GB/s of
weights streamed and as a ratio to (1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli_support import model_source  # noqa: E402
from engine import ExecutorOptions, load_engine  # noqa: E402
from engine.weights.names import expected_shapes  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_bandwidth(gigabytes: float = 1.0) -> float:
    rows = int(gigabytes * 1e9 / 4 / 4096)
    matrix = np.random.default_rng(0).standard_normal((rows, 4096), dtype=np.float32)
    vector = np.ones(4096, np.float32)
    return matrix.nbytes / best_of(lambda: matrix @ vector, 5) / 1e9


def numpy_matmul_chain(cfg) -> tuple[float, int]:
    """Seconds per token for the model's weight matmuls alone, in numpy float32."""
    rng = np.random.default_rng(0)
    h, kv, f = cfg.hidden_size, cfg.kv_heads * cfg.head_dim, cfg.ffn_size
    layer = [rng.standard_normal(s, dtype=np.float32) for s in ((h, h), (kv, h), (kv, h), (h, h), (f, h), (f, h), (h, f))]
    head = rng.standard_normal((cfg.vocab_size, h), dtype=np.float32)
    x = np.ones(h, np.float32)

    def token():
        for _ in range(cfg.num_layers):
            for w in layer:
                w @ (x if w.shape[1] == h else np.ones(w.shape[1], np.float32))
        head @ x
    nbytes = (sum(w.nbytes for w in layer) * cfg.num_layers + head.nbytes)
    return best_of(token, 5), nbytes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", type=int, choices=(2, 3))
    p.add_argument("-C", "--config")
    p.add_argument("-M", "--model")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--backend", default="auto")
    args = p.parse_args()
    builtin = args.version is None
    engine = load_engine(model_source(args, builtin=builtin, need_tokenizer=builtin),
                         ExecutorOptions(backend=args.backend, max_seq_len=args.max_seq_len))
    cfg, ex = engine.config, engine.executor
    weight_bytes_fp32 = 4 * sum(int(np.prod(shape)) for shape in expected_shapes(cfg).values())
    prefill_s = best_of(lambda: ex.prefill(list(range(1, 65)), 0), 3)
    ex.prefill([1, 2, 3, 4], 0)
    step = best_of(lambda: [ex.decode(5, 4 + i) for i in range(args.tokens)], 3) / args.tokens
    bandwidth = numpy_bandwidth()
    chain_s, chain_bytes = numpy_matmul_chain(cfg)
    result = {
        "model": engine.info.name, "executor": ex.name, "compute_dtype": "float32",
        "load_s": round(engine.info.load_s, 1), "peak_rss_after_load_GB": round(engine.info.peak_rss_after_load / 1e9, 2),
        "prefill_64_tokens_per_s": round(64 / prefill_s, 1),
        "numpy_gemv_GBps": round(bandwidth, 2),
        "numpy_chain": {"ms_per_token": round(chain_s * 1e3, 2), "GBps": round(chain_bytes / chain_s / 1e9, 2)},
        "ours": {"ms_per_token": round(step * 1e3, 2), "tokens_per_s": round(1 / step, 2),
                 "GBps": round(weight_bytes_fp32 / step / 1e9, 2)},
        "ours_vs_bandwidth": round(weight_bytes_fp32 / step / 1e9 / bandwidth, 3),
        "ours_vs_numpy_chain": round(chain_s / step, 3),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
