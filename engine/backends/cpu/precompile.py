"""The first start's kernels, compiled in a child process, so the process that holds the model never keeps the
compiler's memory.

Once numba and LLVM have compiled, they keep ~0.2 GB of compiler state (``malloc_trim`` gives none of it back);
compiled in the process that loads the model, it came on top of the weights (LLaMA3-8b int4 peaked at 5.62 GB on
the first start, 5.43 GB on later ones). So when the kernel cache lacks this model's variant, a child process
(this interpreter with this ``sys.path``, started as ``python -c``: no fork, works from the embedded Windows
runtime) loads the same file as a one-layer model and warms it up. Every kernel is then called with the argument
types the whole model will pass (the file's own views: element type, read-only, alignment; the same 8-/4-bit
blocks, KV cache and activation types), numba writes each to the on-disk cache, and the child exits; the parent
only loads them. If the child fails, the parent compiles in its own ``warmup`` as before: never worse.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path

from engine.errors import Cancelled
from engine.weights.names import EMBEDDING, LM_HEAD, layer_name

# The stage a load reports while compiling (the app shows any stage starting "compiling" as "Compiling").
STAGE = "compiling CPU kernels once (a minute or two; later starts take a second)"
_LINEAR = ("wq", "wk", "wv", "wo", "w1", "w3", "w2")
# Context of the child's one-layer model: the buffers' sizes change no argument type; warmup's prefill needs 4.
_CHILD_CONTEXT = 8
_CHILD_CODE = ("import json, sys; spec = json.loads(sys.stdin.readline()); sys.path[:] = spec['sys_path']; "
               "from engine.backends.cpu.precompile import child_main; sys.exit(child_main(spec))")


def kernel_variant(cfg, source, options) -> str:
    """What decides the kernels' argument types, as a file name: the layers' and the vocabulary matrix's formats,
    the embedding's, the KV cache's and the activations' (16-bit for the built-in model's own blocks)."""
    from .quantize import QUANTIZED, can_quantize, head_format
    from .weights import packs_layers

    head = EMBEDDING if cfg.tie_word_embeddings else LM_HEAD
    own_blocks = options.weight_format == "int4" and options.blocks_file is not None

    def planned(name: str) -> str:
        info = source.tensors[name]
        if own_blocks:
            return "gguf"
        if options.weight_format in QUANTIZED and can_quantize(info.shape):
            return head_format(name, cfg, options.weight_format)
        return info.dtype

    names = [layer_name(i, s) for i in range(cfg.num_layers) for s in _LINEAR]
    layers = sorted({planned(n) for n in names})
    if packs_layers(source, [n for n in names if planned(n) == source.tensors[n].dtype]):
        layers = [f + "_packed" for f in layers]
    embedding = "tied" if cfg.tie_word_embeddings else source.tensors[EMBEDDING].dtype
    activations = "act16" if options.blocks_file is not None else "act8"
    return "-".join(["+".join(layers), f"head_{planned(head)}", f"emb_{embedding}", options.kv_cache, activations])


def kernels_cached(variant: str) -> bool:
    from . import jit
    return jit.compiled_marker(variant).exists()


def compile_in_child(cfg, source, options, progress=None, cancel: threading.Event | None = None) -> str | None:
    """Compile and cache the kernels this model needs in a child process, unless they are cached already.

    Returns None when the kernels are cached (now or before), else why the child could not do it (the caller then
    compiles in-process). ``progress(stage, done, total)`` shows it; ``cancel`` stops it (raises ``Cancelled``).
    """
    from . import jit, weight_cache

    variant = kernel_variant(cfg, source, options)
    if kernels_cached(variant):
        return None
    if getattr(sys, "frozen", False):   # a frozen executable is no Python to start: compile in-process
        return "a frozen program cannot start a Python child process"
    spec = {"sys_path": sys.path, "checkpoint": str(source.path), "config": asdict(cfg),
            "weight_format": options.weight_format, "kv_cache": options.kv_cache, "threads": options.threads,
            "blocks_file": str(options.blocks_file) if options.blocks_file is not None else None}
    if progress:
        progress(STAGE, 0, 3)
    try:
        # the same interpreter with the same flags (-I in the installed app: no stray folder imported)
        flags = subprocess._args_from_interpreter_flags()
        # its one-layer model's quantized weights are of no use later: not kept (weight_cache's limit 0)
        env = dict(os.environ, **{jit.PARENTS_CACHE: str(jit.CACHE_DIR), weight_cache.LIMIT_ENV: "0"})
        child = subprocess.Popen([sys.executable, *flags, "-c", _CHILD_CODE], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                 errors="replace", env=env, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except OSError as exc:
        return f"the child process did not start ({exc})"
    lines: queue.Queue = queue.Queue()
    errors: list[str] = []
    readers = [threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True),
               threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        child.stdin.write(json.dumps(spec) + "\n")
        child.stdin.close()
    except OSError:
        pass  # it died already: its return code and stderr say why
    while True:
        if cancel is not None and cancel.is_set():
            child.kill()
            child.wait()
            raise Cancelled("Loading was cancelled.", code="load_cancelled")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if child.poll() is not None and not readers[0].is_alive() and lines.empty():
                break
            continue
        if progress and line.startswith("done "):
            progress(STAGE, int(line.split()[1]), 3)
    for reader in readers:
        reader.join()
    if child.wait() != 0 or not kernels_cached(variant):
        tail = "".join(errors).strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
        return f"compiling in a child process failed: {tail[0]}"
    return None


def child_main(spec: dict) -> int:
    """In the child: the model's file as a one-layer model, warmed up (which caches every kernel it calls)."""
    from engine.backends.registry import ExecutorOptions
    from engine.config import ModelConfig, RopeScaling
    from engine.weights.validation import open_weights

    from .cpu_executor import CpuExecutor

    config = dict(spec["config"])
    rope = config.pop("rope_scaling")
    cfg = ModelConfig(**config, rope_scaling=RopeScaling(**rope) if rope else None)
    blocks = spec["blocks_file"]
    options = ExecutorOptions(device="CPU", weight_format=spec["weight_format"], kv_cache=spec["kv_cache"],
                              threads=spec["threads"], max_seq_len=_CHILD_CONTEXT,
                              blocks_file=None if blocks is None else Path(blocks))
    executor = CpuExecutor(replace(cfg, num_layers=1), open_weights(spec["checkpoint"]), options)
    try:
        print("done 1", flush=True)
        # the marker names the whole model's variant, which the parent looks for (its other layers' formats count)
        executor.kernel_variant = kernel_variant(cfg, executor.source, options)
        executor.warmup(lambda stage, done, total: print(f"done {1 + done}", flush=True))
    finally:
        executor.close()
    return 0
