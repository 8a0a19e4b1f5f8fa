"""Open a weight file (or folder) and check it against the config before any memory is spent.

Accepted: a MindSpore ``.ckpt`` (with or without extra training records), one
``.safetensors`` file, HF shards through their ``*.safetensors.index.json``, or
a folder holding exactly one of those. Every name, shape and dtype is compared
with what the config implies; all problems are collected and reported in one
message that names the file, so a LLaMA2 checkpoint given as LLaMA3 is refused
in a second, not after minutes of loading. On refusal the file is closed at
once (Windows would otherwise keep it locked).
"""

from __future__ import annotations

from pathlib import Path

from engine.config import ModelConfig
from engine.errors import CheckpointError, quote

from .ckpt_reader import CkptReader
from .dtypes import FLOAT_DTYPES
from .names import EMBEDDING, LAYER_RE, LM_HEAD, MODEL_PREFIXES, expected_shapes, is_recomputed_buffer
from .safetensors_reader import SafetensorsReader, ShardedSafetensors
from .tensor_source import TensorSource

_INDEX_SUFFIX = ".safetensors.index.json"


def _pick_in_folder(folder: Path) -> Path:
    indexes = sorted(folder.glob("*" + _INDEX_SUFFIX))
    if len(indexes) == 1:
        return indexes[0]
    for pattern in ("*.safetensors", "*.ckpt"):
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
    listing = ", ".join(p.name for p in sorted(folder.iterdir())[:6]) or "nothing"
    raise CheckpointError(
        f"{folder} is a folder; it should hold one checkpoint: a .ckpt, a .safetensors, or safetensors shards with "
        f"their {_INDEX_SUFFIX.lstrip('.')} file. It holds: {quote(listing, 200)}. Choose the file itself.",
        path=folder,
        code="checkpoint_is_folder",
        params={"path": folder, "index": _INDEX_SUFFIX.lstrip("."), "listing": quote(listing, 200)})


def open_weights(path: str | Path) -> TensorSource:
    """Pick the reader by name; anything else is read as a MindSpore ``.ckpt``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}", path=path,
                              code="checkpoint_file_not_found", params={"path": path})
    if path.is_dir():
        path = _pick_in_folder(path)
    if path.name.endswith(_INDEX_SUFFIX):
        return ShardedSafetensors(path)
    if path.suffix.lower() == ".safetensors":
        return SafetensorsReader(path)
    return CkptReader(path)


def _looks_like(source: TensorSource) -> int | None:
    emb = source.tensors.get(EMBEDDING)
    if emb and len(emb.shape) == 2:
        return {32000: 2, 128256: 3}.get(emb.shape[0])
    return None


def _found(cfg: ModelConfig, source: TensorSource) -> str:
    """Say what the file holds beside what the config expects."""
    emb = source.tensors.get(EMBEDDING)
    layers = {int(m.group(1)) for n in source.tensors if (m := LAYER_RE.match(n))}
    found = f"{len(layers)} layers" + (f", vocabulary {emb.shape[0]}, hidden size {emb.shape[1]}"
                                       if emb and len(emb.shape) == 2 else "")
    version = _looks_like(source)
    guess = f" It looks like a LLaMA{version} checkpoint." if version else ""
    return (f" The file has {found}; the config expects {cfg.num_layers} layers, vocabulary "
            f"{cfg.vocab_size}, hidden size {cfg.hidden_size}.{guess}")


def validate_weights(source: TensorSource, cfg: ModelConfig, config_name: str = "the config") -> None:
    """Raise one CheckpointError listing every mismatch between file and config (and close the file)."""
    expected = expected_shapes(cfg)
    problems: list[str] = []
    missing = [n for n in expected if n not in source.tensors]
    for name, shape in expected.items():
        info = source.tensors.get(name)
        if info is None:
            continue
        if tuple(info.shape) != shape:
            problems.append(f"{name} has shape {list(info.shape)[:8]}, expected {list(shape)}")
        elif info.dtype not in FLOAT_DTYPES:
            problems.append(f"{name} has dtype {info.dtype}, expected one of {', '.join(FLOAT_DTYPES)}")
    unexpected = [n for n in source.tensors if n.startswith(MODEL_PREFIXES) and n not in expected
                  and not is_recomputed_buffer(n) and not (cfg.tie_word_embeddings and n == LM_HEAD)]
    unreadable = {n: t for n, t in getattr(source, "skipped", {}).items() if n in expected}
    if unreadable:
        missing = [n for n in missing if n not in unreadable]
        name, kind = next(iter(unreadable.items()))
        problems.append(f"{len(unreadable)} tensors are stored in a type the engine cannot read "
                        f"(e.g. {name} as {quote(kind)}; expected {', '.join(FLOAT_DTYPES)})")
    if missing:
        problems.append(f"{len(missing)} tensors are missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors are not part of this model "
                        f"(e.g. {', '.join(quote(n) for n in unexpected[:3])})")
    if problems:
        shown, found = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else ""), _found(cfg, source)
        message = f"{source.path} does not match {config_name}: {shown}.{found}"
        source.close()
        raise CheckpointError(message, path=source.path, suggested_version=_looks_like(source),
                              code="checkpoint_config_mismatch",
                              params={"path": source.path, "config": config_name, "problems": shown, "found": found})
