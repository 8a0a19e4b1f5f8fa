"""Perplexity of a fixed text under a loaded model: how much 8-bit weights cost in quality.

    python bench/perplexity.py --builtin                 # stored weights vs --quantize int8
    python bench/perplexity.py -V 2 -C <yaml> -F <tokenizer.model> -M <ckpt>

Every token after the first is scored by the model's probability of it given
the text before it (one decode step per token, the path a chat uses), and the
perplexity is exp(mean negative log-probability). The README quotes the
built-in model's figures; tests/test_cpu_executor.py checks int8 moves it by
less than 1%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEXT = Path(__file__).resolve().parent / "texts" / "perplexity_en.txt"


def perplexity(engine, text: str, max_tokens: int = 512) -> tuple[float, int]:
    """(perplexity, tokens scored) of ``text`` under ``engine`` (a loaded ChatEngine)."""
    ids = engine.tokenizer.encode(text, bos=engine.tokenizer.bos_id is not None)[:max_tokens]
    executor = engine.executor
    engine.reset_cache()
    logits = executor.prefill(ids[:1], 0)
    nll = 0.0
    for pos in range(1, len(ids)):
        z = logits.astype(np.float64)
        log_probs = z - z.max() - np.log(np.exp(z - z.max()).sum())
        nll -= log_probs[ids[pos]]
        logits = executor.decode(ids[pos], pos)
    engine.reset_cache()
    return float(np.exp(nll / (len(ids) - 1))), len(ids) - 1


def main() -> int:
    from cli_support import model_source
    from engine import ExecutorOptions, load_engine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-V", "--version", type=int, default=2)
    p.add_argument("-C", "--config")
    p.add_argument("-F", "--tokenizer")
    p.add_argument("-M", "--model")
    p.add_argument("--builtin", action="store_true")
    p.add_argument("--text", type=Path, default=TEXT)
    args = p.parse_args()
    text = args.text.read_text(encoding="utf-8")
    results = {}
    for fmt in ("stored", "int8"):
        engine = load_engine(model_source(args), ExecutorOptions(backend="cpu", weight_format=fmt))
        ppl, n = perplexity(engine, text)
        results[fmt] = {"perplexity": round(ppl, 4), "tokens": n, "weight_format": engine.info.weight_format}
        engine.close()
    change = results["int8"]["perplexity"] / results["stored"]["perplexity"] - 1
    results["int8_change_percent"] = round(100 * change, 3)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
