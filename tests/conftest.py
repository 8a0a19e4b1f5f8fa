"""Tokenizer files for the tests: small ones made here, real ones from tests/assets.py.

Real files skip the tests that need them (saying how to fetch them) when they
are not cached and cannot be downloaded; the small ones are always available.
"""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import assets
import pytest

from fixtures import (  # noqa: F401  (model fixtures)
    cli_compile_cache, llama2_cpu_engine, llama2_engine, llama2_executor, llama2_tiny, llama3_chunked, llama3_executor)
from app_fixtures import app_qt, engine_host, home, open_window  # noqa: F401,E402  (desktop app fixtures)

ROOT = Path(__file__).resolve().parent.parent

_EN = ("the quick brown fox jumps over lazy dog model token chat assistant user hello world "
       "windows desktop python memory answer question write code number today weather llama").split()
_ZH = list("我们你他她是的了在有和人这中大为上个国说到也子时要就出会可以年生能对着下过多学家么没于都发好看起还用心天想")
_RARE = list("龘齉靐饕餮鬱ñøåß")  # a few rare characters, left to byte fallback by coverage


def spm_corpus(seed: int = 1234, lines: int = 3000) -> list[str]:
    """Deterministic English/Chinese/digits text to train small SentencePiece models on."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        k = rng.random()
        if k < 0.45:
            line = " ".join(rng.choice(_EN) for _ in range(rng.randint(3, 14)))
        elif k < 0.8:
            line = "".join(rng.choice(_ZH) for _ in range(rng.randint(4, 20))) + rng.choice("。，！？")
        else:
            zh = "".join(rng.choice(_ZH) for _ in range(3))
            line = f"{rng.choice(_EN).title()} {rng.randint(0, 99999)}, {zh} {rng.choice(_EN)}!"
        if rng.random() < 0.1:
            line = "  " + line
        if rng.random() < 0.02:
            line += rng.choice(_RARE)
        out.append(line)
    return out


def train_spm(path: Path, vocab_size: int) -> Path:
    """A LLaMA2-style SentencePiece BPE model (byte fallback, split digits, identity)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(spm_corpus()), model_writer=buf, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, split_digits=True, character_coverage=0.999,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, num_threads=1, minloglevel=2)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="session")
def spm_models(tmp_path_factory) -> dict[int, Path]:
    """Two trained SentencePiece BPE models, by vocabulary size."""
    folder = tmp_path_factory.mktemp("spm")
    return {size: train_spm(folder / f"bpe{size}.model", size) for size in (400, 1000)}


@pytest.fixture(scope="session")
def spm_model(spm_models) -> Path:
    return spm_models[1000]


TIKTOKEN_MERGES = [b"he", b"ll", b"llo", b"hello", b" w", b"or", b"ld", b" wor", b" world", b"<|", b"|>"]


@pytest.fixture(scope="session")
def tiktoken_file(tmp_path_factory) -> Path:
    """A tiny tiktoken-format rank file: the 256 bytes plus a few merges."""
    tokens = [bytes([b]) for b in range(256)] + TIKTOKEN_MERGES
    path = tmp_path_factory.mktemp("tiktoken") / "tokenizer.model"
    lines = [f"{base64.b64encode(t).decode('ascii')} {rank}" for rank, t in enumerate(tokens)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- real files (tests/assets.py) -------------------------------------------

@pytest.fixture(scope="session")
def llama2_model() -> Path:
    return assets.require_asset("llama2-tokenizer")


@pytest.fixture(scope="session")
def llama3_model() -> Path:
    return assets.require_asset("llama3-tokenizer")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return assets.require_asset("smollm2-gguf")


@pytest.fixture(scope="session")
def llama_bpe_gguf() -> Path:
    return assets.require_asset("llama-bpe-gguf")


def _vocab_cases(kind: str) -> list[tuple[str, list[int]]]:
    cases = assets.vocab_cases(kind)
    if cases is None:
        pytest.skip(assets.why_missing(f"llama-{kind}-out"))
    return cases


@pytest.fixture(scope="session")
def spm_cases() -> list[tuple[str, list[int]]]:
    """llama.cpp's 46 LLaMA2 (text, ids without BOS) cases."""
    return _vocab_cases("spm")


@pytest.fixture(scope="session")
def bpe_cases() -> list[tuple[str, list[int]]]:
    """llama.cpp's 46 LLaMA3 (text, ids without BOS) cases."""
    return _vocab_cases("bpe")


def pytest_terminal_summary(terminalreporter, config):
    """What the Windows stage (tests/test_windows_wine.py) measured under Wine, when it ran."""
    import wine_env
    lines = config.stash.get(wine_env.REPORT_KEY, None)
    if lines:
        terminalreporter.section("Windows build under Wine")
        for line in lines:
            terminalreporter.write_line(line)
