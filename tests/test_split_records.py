"""A layer matrix stored in several records (as MindSpore writes tensors over 512 MiB) is used whole.

Such a file is made from the LLaMA2-shaped test model: MindSpore writes every tensor but one feed-forward
matrix, which is appended as two consecutive records of the same name, each with the full shape and half the
rows (MindSpore's own layout for a split tensor; a real 512 MiB layer would take minutes to write here). The
cpu executor's fused decode step must read all of it: greedy tokens equal the numpy reference's.
"""

from __future__ import annotations

import numpy as np

import model_factory as mf
import reference_llama as ref
from fixtures import make_executor
from test_checkpoint_files import _ckpt_record

SPLIT = "model.layers.0.feed_forward.w1.weight"


def test_a_layer_matrix_split_across_records_is_read_whole_by_the_decode_step(llama2_tiny, tmp_path):
    _, yml, weights, spec = llama2_tiny
    path = tmp_path / "split_w1.ckpt"
    mf.write_ckpt(spec, {n: a for n, a in weights.items() if n != SPLIT}, path)
    w1 = weights[SPLIT].astype(np.float16)
    half = w1.shape[0] // 2
    with open(path, "ab") as f:
        for rows in (w1[:half], w1[half:]):
            f.write(_ckpt_record(SPLIT, list(w1.shape), "Float16", rows.tobytes()))
    ex = make_executor("cpu", path, yml)
    try:
        assert len(ex.source.tensors[SPLIT].chunks) == 2      # the file really holds it in two records
        prompt = [1, 15, 300, 7, 999]
        logits, out, pos = ex.prefill(prompt, 0), [], len(prompt)
        for _ in range(8):                                    # each of these tokens goes through the fused decode
            out.append(int(np.argmax(logits)))
            logits = ex.decode(out[-1], pos)
            pos += 1
        assert out == ref.greedy(weights, spec.hp, prompt, 8)
    finally:
        ex.close()
