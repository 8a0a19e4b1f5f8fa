"""What models there are, what is on this PC, and what each needs: the facts behind the Models page.

The downloadable models come from ``checkpoint_download``'s manifest (its API, never the yaml
itself); the built-in model and the ones the user added complete the list. Before a download
nothing can be measured, so the memory a model will need is planned from its config's shapes
(parameters x bytes per weight, plus the KV cache for its context); once its files are here,
``engine.estimate_memory`` gives the real figure.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import QCoreApplication

from engine import paths

from .preferences import ModelChoice

VERSIONS = {"llama2": 2, "llama3": 3, "llama2-hf": 2, "llama3-hf": 3}
TITLES = {"llama2": "LLaMA2-7B", "llama3": "LLaMA3-8B", "llama2-hf": "LLaMA2-7B-chat",
          "llama3-hf": "LLaMA3-8B-Instruct"}
STORED_FORMATS = {"llama2": "fp16 .ckpt (MindSpore)", "llama3": "bf16 .ckpt (MindSpore)",
                  "llama2-hf": "fp16 safetensors", "llama3-hf": "bf16 safetensors"}
INT8_BYTES_PER_WEIGHT = 34 / 32           # blocks of 32 int8 weights with one 2-byte scale
INT4_BYTES_PER_WEIGHT = 18 / 32           # q4_k: 4-bit weights, a 6-bit scale and minimum per 32, 2 fp16 per 256
RUNTIME_BYTES = 400_000_000               # Python, the runtime and the prefill's scratch, roughly


def manifest_kinds(manifest: Path | None = None) -> dict[str, str]:
    """Each downloadable model's kind as the download manifest states it: "chat", "base" or "" (not stated)."""
    from checkpoint_download import list_models
    return {spec.name: spec.kind for spec in (list_models(manifest) if manifest else list_models())}


def kind_name(kind: str) -> str:
    """A kind in a few words, for a table cell or a list item: a base model is marked as no chat assistant."""
    return {"chat": QCoreApplication.translate("ModelsDialog", "chat"),
            "base": QCoreApplication.translate("ModelsDialog", "base: continues text")}.get(kind, "")


def kind_meaning(kind: str) -> str:
    """What a kind means for the user: a base model is no chat assistant."""
    if kind == "chat":
        return QCoreApplication.translate("ModelsDialog", "A chat model: tuned to answer questions in turns.")
    if kind == "base":
        return QCoreApplication.translate(
            "ModelsDialog", "A base model: it continues the text it is given; it is not a chat assistant. The app "
                            "chats with it through a plain User:/Assistant: transcript, and answers are weaker "
                            "than a chat model's.")
    return QCoreApplication.translate("ModelsDialog", "Whether this is a chat or a base model is not stated.")


@dataclass
class MemoryPlan:
    """Bytes a model needs loaded: weights as stored, in 8 or in 4 bits; plus its KV cache and the runtime."""

    stored: int
    int8: int
    kv_cache: int
    context: int
    int4: int = 0

    def total(self, weight_format: str = "auto", streams: int = 1) -> int:
        """``streams``: answers computed at once (Settings > API), a KV cache each."""
        weights = {"int8": self.int8, "int4": self.int4}.get(weight_format, self.stored)
        return weights + self.kv_cache * streams + RUNTIME_BYTES

    def smallest_fitting(self, ram: int, four_bit: bool = True, streams: int = 1) -> str | None:
        """The weight format that loads in ``ram``: "auto" (as stored), "int8", "int4", or None when none does.
        ``four_bit``: whether the backend in use has 4-bit weights (only the cpu backend does)."""
        formats = ("auto", "int8", "int4") if four_bit else ("auto", "int8")
        return next((f for f in formats if self.total(f, streams) <= ram), None)


def _parameters(cfg) -> tuple[int, int]:
    """A LLaMA's parameters from its config: (those of the layers and the output matrix, the others)."""
    matrices = _layer_parameters(cfg) + _head_parameters(cfg)
    return matrices, cfg.vocab_size * cfg.hidden_size + (2 * cfg.num_layers + 1) * cfg.hidden_size  # embedding, norms


def _layer_parameters(cfg) -> int:
    h, kv = cfg.hidden_size, cfg.kv_heads * cfg.head_dim
    return cfg.num_layers * (2 * h * h + 2 * h * kv + 3 * h * cfg.ffn_size)   # q, o; k, v; the feed-forward's three


def _head_parameters(cfg) -> int:
    """The output matrix's (none of its own when it is the embedding)."""
    return 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size


def plan_memory(config_path: str | Path, context: int | None = None) -> MemoryPlan:
    """The memory a LLaMA of this config needs, from its shapes alone (no weights are needed)."""
    from engine import load_config
    cfg = load_config(config_path)
    matrices, _rest = _parameters(cfg)  # only the embedding rows of tokens seen are ever read: they hardly count
    context = min(context or cfg.seq_length, cfg.seq_length)
    kv_cache = cfg.num_layers * 2 * cfg.kv_heads * cfg.head_dim * context * 2     # fp16 keys and values
    # under int4 the output matrix stays 8-bit (engine/backends/cpu/quantize.py: head_format)
    int4 = _layer_parameters(cfg) * INT4_BYTES_PER_WEIGHT + _head_parameters(cfg) * INT8_BYTES_PER_WEIGHT
    return MemoryPlan(stored=matrices * 2, int8=int(matrices * INT8_BYTES_PER_WEIGHT), kv_cache=kv_cache,
                      context=context, int4=int(int4))


def weights_on_disk(config_path: str | Path) -> int:
    """A 16-bit checkpoint's size, from its config: every parameter, 2 bytes."""
    from engine import load_config
    return 2 * sum(_parameters(load_config(config_path)))


@dataclass
class CatalogEntry:
    key: str                              # "builtin", a manifest model ("llama3-hf") or "added:<n>"
    title: str
    kind: str                             # "chat", "base" or "" (not stated)
    weight_format: str                    # as stored
    folder: Path
    choice: ModelChoice                   # what to load it with
    downloadable: bool = False
    files: list = field(default_factory=list)   # checkpoint_download FileStatus, for a manifest model
    on_disk: int = 0                      # bytes present (complete files and .part)
    download_bytes: int = 0               # bytes a complete download takes (published, recorded or planned)
    complete: bool = False
    plan: MemoryPlan | None = None
    description: str = ""

    @property
    def missing_bytes(self) -> int:
        return max(self.download_bytes - self.on_disk, 0)


def free_disk_bytes(folder: Path) -> int:
    """Free space where ``folder`` is (or would be created)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def total_ram_bytes() -> int | None:
    try:
        import psutil
        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with MindSpore
        return None


def manifest_entry(spec, models_folder: Path | None = None) -> CatalogEntry:
    """A downloadable model: what is on disk of it, where, and what it needs."""
    from checkpoint_download import model_status
    version = VERSIONS.get(spec.name)
    folder = Path(models_folder or paths.models_dir()) / spec.folder_name
    files = model_status(spec, folder)
    config = paths.default_model_files(version or 2)["config"]
    planned = weights_on_disk(config) if version else 0
    expected = [f.size if f.size else (planned if f.name.endswith((".ckpt", ".safetensors")) else 0) for f in files]
    shards = sum(1 for f in files if f.name.endswith(".safetensors"))
    if shards:  # the planned size is the whole set's: shared out over its shards
        expected = [planned // shards if f.name.endswith(".safetensors") and not f.size else e
                    for f, e in zip(files, expected)]
    checkpoint = folder if shards else folder / next((f.name for f in files if f.name.endswith(".ckpt")), "")
    choice = ModelChoice(source=f"llama{version}", checkpoint=str(checkpoint),
                         tokenizer=str(folder / "tokenizer.model"))
    return CatalogEntry(spec.name, TITLES.get(spec.name, spec.name),
                        spec.kind,
                        STORED_FORMATS.get(spec.name, ""), folder, choice, downloadable=True, files=files,
                        on_disk=sum(f.have_bytes for f in files), download_bytes=sum(expected),
                        complete=all(f.state == "present" for f in files),
                        plan=plan_memory(config) if version else None, description=spec.description)


def builtin_entry() -> CatalogEntry:
    folder = paths.converted_models_dir()
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    config = next(folder.rglob("config.yaml"), None) if folder.is_dir() else None   # once converted
    title = QCoreApplication.translate("ModelsDialog", "SmolLM2-135M-Instruct (built-in)")
    return CatalogEntry("builtin", title, "chat", "4-bit GGUF (Q4_1), run as is", folder,
                        ModelChoice(), on_disk=on_disk, complete=True, plan=plan_memory(config) if config else None)


def added_entry(index: int, added: dict) -> CatalogEntry:
    """A model the user added by its files (Models > Add)."""
    fields = added.get("choice") if isinstance(added, dict) and isinstance(added.get("choice"), dict) else {}
    choice = ModelChoice(**{k: v for k, v in fields.items() if k in ModelChoice.__dataclass_fields__})
    if choice.source not in ("llama2", "llama3"):
        choice = replace(choice, source="llama2")
    path = Path(choice.checkpoint)
    files = [p for p in ([path] if path.is_file() else path.glob("*.safetensors") if path.is_dir() else [])]
    config = choice.config or paths.default_model_files(choice.version or 2)["config"]
    return CatalogEntry(f"added:{index}", str(added.get("name") or path.name), str(added.get("kind", "")),
                        path.suffix.lstrip(".") or "safetensors", path.parent if path.is_file() else path, choice,
                        on_disk=sum(p.stat().st_size for p in files if p.is_file()), complete=bool(files),
                        plan=plan_memory(config))


def catalog(added: list[dict] = (), models_folder: Path | None = None, manifest: Path | None = None
            ) -> list[CatalogEntry]:
    """Every model the app knows: the built-in one, the downloadable ones (``manifest``: another list, for
    tests), chat models first (what a chat user wants; the manifest lists the base sets first), the ones the
    user added."""
    from checkpoint_download import list_models
    entries = [builtin_entry()]
    specs = sorted(list_models(manifest) if manifest else list_models(), key=lambda spec: spec.kind != "chat")
    entries += [manifest_entry(spec, models_folder) for spec in specs]
    entries += [added_entry(i, a) for i, a in enumerate(added)]
    return entries


def choice_to_run(entry: CatalogEntry, current: ModelChoice, ram: int | None, streams: int = 1) -> ModelChoice:
    """How to load ``entry``: with the run settings in use (backend, threads, context), in 8 bits when only
    that fits in this PC's memory, in 4 bits when only that does (the cpu backend); ``streams`` KV caches."""
    choice = replace(entry.choice, backend=current.backend, threads=current.threads,
                     context_length=current.context_length)
    if entry.plan and ram:
        fitting = entry.plan.smallest_fitting(ram, four_bit=_four_bit(current), streams=streams)
        if fitting in ("int8", "int4"):
            choice = replace(choice, weight_format=fitting)
    return choice


def _four_bit(current: ModelChoice) -> bool:
    """Whether the backend in use can load 4-bit weights (the cpu backend; "auto" picks it where it runs)."""
    return current.backend in ("auto", "cpu")


def download_check(entry: CatalogEntry, free_disk: int, ram: int | None, streams: int = 1) -> tuple[str, str]:
    """Before a download: ("refuse", why) when the disk lacks room, ("ask", why) when the model would not run
    here even in 4 bits, ("note", what) when it runs only in 8 or 4 bits, else ("", ""); ``streams`` KV caches."""
    from .download_panel import human_bytes
    if entry.missing_bytes > free_disk:
        return "refuse", QCoreApplication.translate(
            "ModelsDialog", "{0} needs {1} more on the disk and only {2} is free there. Free some space or choose "
                            "another models folder (e.g. another drive).").format(
            entry.title, human_bytes(entry.missing_bytes), human_bytes(free_disk))
    if entry.plan is None or not ram:
        return "", ""
    fitting, total = entry.plan.smallest_fitting(ram, streams=streams), partial(entry.plan.total, streams=streams)
    if fitting is None:
        return "ask", QCoreApplication.translate(
            "ModelsDialog", "{0} needs about {1} of memory even with 4-bit weights, and this PC has {2}: it would "
                            "not load here. Download it anyway ({3})?").format(
            entry.title, human_bytes(total("int4")), human_bytes(ram), human_bytes(entry.missing_bytes))
    if fitting == "int8":
        return "note", QCoreApplication.translate(
            "ModelsDialog", "As stored it needs {0} of memory and this PC has {1}: it will run with 8-bit weights "
                            "({2}).").format(human_bytes(total("auto")), human_bytes(ram), human_bytes(total("int8")))
    if fitting == "int4":
        return "note", QCoreApplication.translate(
            "ModelsDialog", "As stored it needs {0} of memory and this PC has {1}: it will run with 4-bit weights "
                            "({2}; the cpu backend).").format(human_bytes(total("auto")), human_bytes(ram),
                                                              human_bytes(total("int4")))
    return "", ""
