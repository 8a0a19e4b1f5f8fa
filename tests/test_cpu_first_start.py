"""The cpu backend's first start: the kernels are compiled in a child process, the process that holds the model
compiles nothing (it only loads them from the cache), and its answer is the numpy reference's; later starts
just load them.

One cold compile for the whole file (~1 minute): a fresh user-data folder, a real load through ``load_engine``
in its own process (the test process has its kernel cache chosen already), then the command line in the same
folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import reference_llama as ref
from fixtures import ROOT, assert_close, run_cli

import numpy as np

PROMPT = [1, 5, 17, 99, 1000, 3, 44, 12]
NEW_TOKENS = 6

# Loads the model as the app does, then reports the stages shown, what this process compiled, and its answer.
_FIRST_START = """
import json, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
from engine import ExecutorOptions, ModelSource, load_engine

ckpt, yml, prompt, new_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
stages = []
engine = load_engine(ModelSource(version=2, config=yml, checkpoint=ckpt, need_tokenizer=False),
                     ExecutorOptions(backend="cpu"), progress=lambda stage, done, total: stages.append(stage))
executor = engine.executor
logits = executor.prefill(prompt, 0)
first_logits, ids = logits.tolist(), []
for pos in range(len(prompt), len(prompt) + new_tokens):
    ids.append(int(np.argmax(logits)))
    logits = executor.decode(ids[-1], pos)
compiled, loaded = [], 0
for name, module in list(sys.modules.items()):
    for kernel in (vars(module).values() if name.startswith("engine.backends.cpu") else ()):
        if isinstance(kernel, Dispatcher):
            compiled += [f"{name}.{kernel.py_func.__name__}{tuple(s)}" for s in kernel.stats.cache_misses]
            loaded += sum(kernel.stats.cache_hits.values())
print(json.dumps({"stages": sorted(set(stages)), "compiled": compiled, "loaded": loaded, "logits": first_logits,
                  "ids": ids}))
"""


def test_first_start_compiles_in_a_child_and_later_starts_load(tmp_path, llama2_tiny):
    ckpt, yml, weights, spec = llama2_tiny
    home = tmp_path / "home"
    env = dict(os.environ, LLAMA_DESK_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    done = subprocess.run([sys.executable, "-c", _FIRST_START, str(ckpt), str(yml), json.dumps(PROMPT),
                           str(NEW_TOKENS)], capture_output=True, text=True, encoding="utf-8", env=env, cwd=ROOT,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout.strip().splitlines()[-1])
    # the child compiled (the stage was shown before the weights), this process only loaded what it cached
    assert any(stage.startswith("compiling CPU kernels once") for stage in first["stages"]), first["stages"]
    assert "loading compiled CPU kernels" in first["stages"], first["stages"]
    assert first["compiled"] == [] and first["loaded"] > 0, first
    assert list(home.rglob("*.nbi")), "the child wrote no kernels to the cache"
    # fp16 weights as stored, fp16 KV cache: the reference's logits to 1e-3 of the largest, the same tokens
    assert_close(np.asarray(first["logits"], np.float32), ref.forward(weights, spec.hp, PROMPT)[-1], 1e-3)
    assert first["ids"] == ref.greedy(weights, spec.hp, PROMPT, NEW_TOKENS)

    args = ("run_model.py", "-V", "2", "-C", yml, "-M", ckpt, "--prompt-ids", ",".join(map(str, PROMPT)),
            "--greedy", "--max-new-tokens", str(NEW_TOKENS), "--backend", "cpu", "--json")
    second = run_cli(*args, home=home)
    assert second.returncode == 0 and "loading compiled CPU kernels" in second.stderr, second.stderr[-2000:]
    assert "compiling" not in second.stderr
