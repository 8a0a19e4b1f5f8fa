"""Perplexity of a fixed text under a loaded model: what 8-bit and 4-bit weights cost in quality, beside llama.cpp's.

    python bench/perplexity.py --builtin                 # stored, int8, int4 (both 4-bit layouts), llama.cpp
    python bench/perplexity.py -V 2 -C <yaml> -F <tokenizer.model> -M <ckpt>

Every token after the first is scored by the model's probability of it given
the text before it (one decode step per token, the path a chat uses), and the
perplexity is exp(mean negative log-probability). The same token ids then go
through llama.cpp (when ``llama-cpp-python`` is installed) on a GGUF copy of
the same weights in F16, Q8_0, Q4_0, Q4_1 and Q4_K_M (its own quantizer), so
each of our formats is judged against llama.cpp's change on the same model
and text, in the same run. The README quotes the built-in model's figures;
tests/test_cpu_executor.py checks int8's change stays small.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
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


def text_ids(engine, text: str, max_tokens: int = 512) -> list[int]:
    return engine.tokenizer.encode(text, bos=engine.tokenizer.bos_id is not None)[:max_tokens]


def llama_cpp_perplexities(checkpoint: Path, config: Path, ids: list[int], kinds, folder: Path) -> dict:
    """llama.cpp's perplexity of ``ids`` on GGUF copies of the checkpoint (F16, then its own quantizations)."""
    from llama_cpp import Llama

    from gguf_export import cached_gguf

    out = {}
    for kind in kinds:
        path = cached_gguf(checkpoint, config, kind, folder)
        llm = Llama(model_path=str(path), n_ctx=len(ids) + 8, n_batch=len(ids), n_ubatch=len(ids), logits_all=True,
                    verbose=False)
        llm.eval(ids)
        z = np.asarray(llm.scores[:len(ids) - 1], np.float64)
        log_probs = z - z.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        nll = -log_probs[np.arange(len(ids) - 1), ids[1:]].sum()
        out[kind] = round(float(np.exp(nll / (len(ids) - 1))), 4)
        del llm
    return out


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
    p.add_argument("--int4-layouts", default="q4_k,q4_1,q4_0", help="the 4-bit layouts to measure")
    args = p.parse_args()
    import engine.backends.cpu.quantize as quantize
    import engine.loader as loader
    # int4 quantizes the float weights in the layout asked for, even for the built-in model (whose int4 normally
    # takes its GGUF file's Q4_1 blocks as they are: the "int4" row then is that file's, "q4_1" our re-quantization)

    text = args.text.read_text(encoding="utf-8")
    results, ids, files = {}, None, None
    layouts = [("int4", layout) for layout in args.int4_layouts.split(",")]
    runs = [("stored", None), ("int8", None)] + ([("int4", None)] if args.builtin else []) + layouts
    find_builtin_gguf = loader.find_builtin_gguf
    for fmt, layout in runs:
        if layout:
            quantize.INT4_LAYOUT = layout
        loader.find_builtin_gguf = (lambda: None) if layout else find_builtin_gguf
        engine = load_engine(model_source(args), ExecutorOptions(backend="cpu", weight_format=fmt))
        ids = text_ids(engine, text)
        ckpt = Path(engine.info.checkpoint)
        files = (ckpt, ckpt.parent / "config.yaml" if args.builtin else Path(args.config))
        ppl, n = perplexity(engine, text)
        results[layout or fmt] = {"perplexity": round(ppl, 4), "tokens": n, "weight_format": engine.info.weight_format}
        engine.close()
    base = results["stored"]["perplexity"]
    changes = {name: round(100 * (r["perplexity"] / base - 1), 3) for name, r in results.items() if name != "stored"}
    report = {"ours": results, "ours_change_percent": changes}
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        report["llama.cpp"] = "not installed: pip install llama-cpp-python==0.3.36"
    else:
        theirs = llama_cpp_perplexities(Path(files[0]), Path(files[1]), ids, ("F16", "Q8_0", "Q4_0", "Q4_1", "Q4_K_M"),
                                        ROOT / "bench" / ".cache")
        report["llama.cpp"] = theirs
        report["llama.cpp_change_percent"] = {k: round(100 * (v / theirs["F16"] - 1), 3) for k, v in theirs.items()
                                              if k != "F16"}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
