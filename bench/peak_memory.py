"""Peak resident memory of ``run_model.py`` end to end (load, quantize, a prompt, an answer), and where it comes from.

    python bench/peak_memory.py -V 3 -C configs/predict_llama3_8b.yaml -M llama3_8b.ckpt -F tokenizer.model \\
        --quantize int4 --prompt-tokens 512 --new-tokens 64

Runs the command line exactly as a user would (its own process, default context
unless ``--max-seq-len``), samples the child's resident memory every 0.1 s and
reports the peak, whether it fell while loading or after (the child's own
peak after loading is in its JSON), what the app's memory estimate said, and
the run's own prefill and decode speed. On Linux the peak is
split into anonymous memory (what the program allocated) and file pages (the
checkpoint's memory map): the OS can drop the latter under pressure, the former
it cannot.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
GB = 1e9


def _linux_split(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes from /proc; (0, 0) where there is no /proc."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":" in line)
        return (int(fields["RssAnon"].split()[0]) * 1024, int(fields["RssFile"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        return 0, 0


class Sampler(threading.Thread):
    """Polls a process's RSS; remembers the peak, its split and when it happened."""

    def __init__(self, pid: int, period: float = 0.1):
        super().__init__(daemon=True)
        self.proc, self.period = psutil.Process(pid), period
        self.peak = {"rss": 0, "anon": 0, "file": 0, "at_s": 0.0}
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopped.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            if rss > self.peak["rss"]:
                anon, file = _linux_split(self.proc.pid)
                self.peak = {"rss": rss, "anon": anon, "file": file, "at_s": time.monotonic() - start}
            self.stopped.wait(self.period)


def prompt_ids(vocab: int, n: int) -> str:
    return ",".join(str(int(i)) for i in np.random.default_rng(1).integers(300, min(vocab, 30000), n))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", type=int, choices=(2, 3), required=True)
    p.add_argument("-C", "--config", required=True)
    p.add_argument("-M", "--model", required=True)
    p.add_argument("-F", "--tokenizer")
    p.add_argument("--quantize", default="int4", choices=("none", "int8", "int4"))
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--max-seq-len", type=int, help="default: the model's own context")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()

    from engine.config import load_config
    cfg = load_config(args.config)
    cmd = [sys.executable, str(HERE.parent / "run_model.py"), "-V", str(args.version), "-C", args.config,
           "-M", args.model, "--quantize", args.quantize,
           "--prompt-ids", prompt_ids(cfg.vocab_size, args.prompt_tokens),
           "--max-new-tokens", str(args.new_tokens), "--greedy", "--lookup", "off", "--json"]
    cmd += ["-F", args.tokenizer] if args.tokenizer else []
    cmd += ["--max-seq-len", str(args.max_seq_len)] if args.max_seq_len else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    sampler = Sampler(child.pid)
    sampler.start()
    stderr_lines: list[str] = []

    def watch_stderr():
        for line in child.stderr:
            stderr_lines.append(line)
    threading.Thread(target=watch_stderr, daemon=True).start()
    out = child.stdout.read()
    child.wait()
    sampler.stopped.set()
    sampler.join()
    if child.returncode != 0:
        print("".join(stderr_lines[-20:]), file=sys.stderr)
        return child.returncode
    result = json.loads(out.strip().splitlines()[-1])
    model, stats = result["model"], result["stats"]
    peak = sampler.peak
    report = {
        "model": args.model, "quantize": args.quantize, "context": model.get("context_length"),
        "prompt_tokens": args.prompt_tokens, "new_tokens": len(result["output_ids"]),
        "wall_s": time.monotonic() - started, "load_s": model.get("load_s"),
        "peak_rss_bytes_sampled": peak["rss"], "peak_at_s": peak["at_s"],
        "peak_anon_bytes": peak["anon"], "peak_file_bytes": peak["file"],
        "peak_rss_bytes_child": stats.get("peak_rss_bytes"), "peak_rss_after_load": model.get("peak_rss_after_load"),
        "memory_estimate": model.get("memory_estimate"),
        "prefill_tokens_per_s": stats.get("prefill_tokens_per_s"),
        "decode_tokens_per_s": stats.get("decode_tokens_per_s"),
        "load_average": psutil.getloadavg()[0],
    }
    for key in ("peak_rss_bytes_child", "peak_rss_after_load", "memory_estimate", "peak_rss_bytes_sampled"):
        value = report[key]
        print(f"{key:24} {value / GB:7.2f} GB" if value else f"{key:24} -")
    print(f"{'sampled peak':24} anon {peak['anon'] / GB:.2f} GB + file pages {peak['file'] / GB:.2f} GB, "
          f"{peak['at_s']:.0f} s after start (loading took {report['load_s']:.0f} s of {report['wall_s']:.0f})")
    print(f"context {report['context']}, load {report['load_s']:.0f} s, prefill {report['prefill_tokens_per_s']:.2f} "
          f"tok/s, decode {report['decode_tokens_per_s']:.3f} tok/s, load average {report['load_average']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
