"""Write a full-size LLaMA2-7b / LLaMA3-8b shaped MindSpore checkpoint with random weights.

Real checkpoints cannot be downloaded here, but speed and memory depend only
on shapes and dtypes. Each tensor is written by ``mindspore.save_checkpoint``
into its own small file and the files are concatenated (a ``.ckpt`` is a
sequence of records, so this is exactly what one big save would write),
keeping memory to one tensor at a time instead of the whole model.

    python bench/synthetic_checkpoint.py -V 2 -o D:\\tmp\\llama2_7b_synthetic.ckpt
    python bench/synthetic_checkpoint.py --shape tinyllama -o tiny.ckpt   # ~1.1B, writes tiny.yaml too
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import config_from_dict, load_config  # noqa: E402
from engine.paths import default_model_files  # noqa: E402
from engine.weights.names import expected_shapes  # noqa: E402

# TinyLlama-1.1B's shape: a real LLaMA2-architecture model (GQA), 1.1e9 parameters.
# "gqa-0.85b": the same layers, 16 of them (0.84e9 parameters), the bf16 grouped-query case.
SHAPES = {"tinyllama": dict(hidden_size=2048, num_layers=22, num_heads=32, n_kv_heads=4, intermediate_size=5632,
                            vocab_size=32000, seq_length=2048, rms_norm_eps=1e-5, theta=10000.0)}
SHAPES["gqa-0.85b"] = dict(SHAPES["tinyllama"], num_layers=16)


def realistic_pool(rng) -> np.ndarray:
    """Weights like a trained LLaMA's for 4-bit blocks: std ~0.02, heavier tails than a Gaussian.

    Student's t with 5 degrees of freedom (kurtosis 9, real LLaMA matrices: ~4-20) rescaled to
    std 0.02, so a block's maximum sits farther from its typical value as in real weights and
    quantization error behaves as there. Tiled over the tensors: values need not be unique.
    """
    dof = 5.0
    t = rng.standard_t(dof, 1 << 24).astype(np.float32)
    return t * np.float32(0.02 / np.sqrt(dof / (dof - 2.0)))


def shape_config(version: int | None, shape: str | None, layers: int | None):
    if shape:
        return config_from_dict(dict(SHAPES[shape], **({"num_layers": layers} if layers else {})), shape)
    return load_config(default_model_files(version)["config"]).with_overrides(num_layers=layers)


def write_yaml(cfg, path: Path) -> None:
    """A MindFormers-style yaml for ``cfg`` next to the checkpoint."""
    import yaml
    keys = ("hidden_size", "num_layers", "num_heads", "n_kv_heads", "intermediate_size", "vocab_size",
            "seq_length", "rms_norm_eps", "theta", "bos_token_id", "eos_token_id")
    doc = {"model": {"model_config": {k: getattr(cfg, k) for k in keys}}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def write(version: int | None, out: Path, layers: int | None = None, shape: str | None = None,
          dtype_name: str | None = None) -> None:
    import mindspore as ms

    cfg = shape_config(version, shape, layers)
    dtype_name = dtype_name or ("float16" if version in (2, None) else "bfloat16")
    dtype = {"float16": ms.float16, "bfloat16": ms.bfloat16}[dtype_name]
    write_yaml(cfg, out.with_suffix(".yaml"))
    rng = np.random.default_rng(0)
    pool = realistic_pool(rng)
    shapes = expected_shapes(cfg)
    with open(out, "wb") as sink, tempfile.TemporaryDirectory() as tmp:
        for n, (name, shape) in enumerate(shapes.items()):
            size = int(np.prod(shape))
            values = np.resize(pool, size).reshape(shape)
            if len(shape) == 2:   # rows of real weight matrices differ in scale
                values = values * rng.lognormal(0.0, 0.25, (shape[0], 1)).astype(np.float32)
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
    p.add_argument("-V", "--version", type=int, choices=(2, 3))
    p.add_argument("--shape", choices=sorted(SHAPES), help="a preset shape instead of -V's config")
    p.add_argument("--dtype", choices=("float16", "bfloat16"), help="default: float16 for LLaMA2, bfloat16 for 3")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--layers", type=int, help="fewer layers than the real model (same layer shapes), to fit in RAM")
    args = p.parse_args()
    if not args.version and not args.shape:
        p.error("give -V 2/3 or --shape")
    write(args.version, args.output, args.layers, args.shape, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
