"""Write a full-size LLaMA2-7b / LLaMA3-8b shaped MindSpore checkpoint with random weights.

Real checkpoints cannot be downloaded here, but speed and memory depend only
on shapes and dtypes. Each tensor is written by ``mindspore.save_checkpoint``
into its own small file and the files are concatenated (a ``.ckpt`` is a
sequence of records, so this is exactly what one big save would write),
keeping memory to one tensor at a time instead of the whole model.

    python bench/synthetic_checkpoint.py -V 2 -o D:\\tmp\\llama2_7b_synthetic.ckpt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import load_config  # noqa: E402
from engine.paths import default_model_files  # noqa: E402
from engine.weights import expected_shapes  # noqa: E402


def write(version: int, out: Path, layers: int | None = None) -> None:
    import mindspore as ms

    cfg = load_config(default_model_files(version)["config"]).with_overrides(num_layers=layers)
    dtype = ms.float16 if version == 2 else ms.bfloat16
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02)  # tiled: values need not be unique
    shapes = expected_shapes(cfg)
    with open(out, "wb") as sink, tempfile.TemporaryDirectory() as tmp:
        for n, (name, shape) in enumerate(shapes.items()):
            size = int(np.prod(shape))
            values = np.resize(pool, size).reshape(shape)
            tensor = ms.Tensor(values + 1.0) if len(shape) == 1 else ms.Tensor(values).astype(dtype)
            part = Path(tmp) / "one.ckpt"
            ms.save_checkpoint([{"name": name, "data": tensor}], str(part))
            sink.write(part.read_bytes())
            part.chmod(0o600)
            part.unlink()
            print(f"\r{n + 1}/{len(shapes)} tensors", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", type=int, choices=(2, 3), required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--layers", type=int, help="fewer layers than the real model (same layer shapes), to fit in RAM")
    args = p.parse_args()
    write(args.version, args.output, args.layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
