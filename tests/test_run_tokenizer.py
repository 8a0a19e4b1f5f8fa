"""run_tokenizer.py as a user runs it: a real subprocess, real tokenizer files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.text.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "run_tokenizer.py"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, timeout=120,
        input=(stdin or "").encode("utf-8"),
    )
    # The script promises UTF-8 output whatever the console code page is.
    proc.stdout, proc.stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    return proc


def run_json(*args: str) -> dict:
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("fast", [False, True])
def test_json_output(spm_model, fast):
    text = "Hello world, 你好 😀"
    res = run_json("-V", "2", "-F", str(spm_model), "--text", text, *(["--fast"] if fast else []))
    expected = load_tokenizer(spm_model, 2).encode(text, bos=True)
    assert res["ids"] == expected and res["ids"][0] == 1
    assert res["decoded"] == text and res["bos"] is True
    assert res["tokenizer"] == ("llama2-fast" if fast else "llama2-sentencepiece")
    assert (res["vocab_size"], res["vocab_size_with_added"]) == (1000, 1000)


def test_no_bos(spm_model):
    res = run_json("-V", "2", "-F", str(spm_model), "--text", "Hello", "--no-bos")
    assert res["bos"] is False and 1 not in res["ids"]


def test_fast_with_llama3_prints_a_note_and_continues(tiktoken_file):
    proc = run("-V", "3", "--fast", "-F", str(tiktoken_file), "--text", "hello world", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "already" in proc.stderr and "tiktoken" in proc.stderr
    res = json.loads(proc.stdout)  # the note does not spoil the JSON on stdout
    assert res["tokenizer"] == "llama3-tiktoken" and res["decoded"] == "hello world"


def test_missing_file_is_a_clean_error(tmp_path):
    missing = tmp_path / "no" / "tokenizer.model"
    proc = run("-V", "3", "-F", str(missing), "--text", "hi")
    assert proc.returncode == 2
    script = "download.cmd" if os.name == "nt" else "download.sh"
    assert str(missing) in proc.stderr and f"llama3{os.sep}{script}" in proc.stderr and "-F" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_default_file_location_is_named():
    default = ROOT / "checkpoint_download" / "llama2" / "tokenizer.model"
    if default.exists():
        pytest.skip(f"{default} exists on this machine")
    proc = run("-V", "2", "--text", "hi")
    assert proc.returncode == 2 and str(default) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wrong_version_is_a_clean_error(spm_model, tiktoken_file):
    proc = run("-V", "3", "-F", str(spm_model), "--text", "hi")
    assert proc.returncode == 2 and "looks like a LLaMA2" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("-V", "2", "--fast", "-F", str(tiktoken_file), "--text", "hi")
    assert proc.returncode == 2 and "looks like a LLaMA3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_interactive_loop(spm_model):
    proc = run("-V", "2", "-F", str(spm_model), stdin="Hello world\n你好\n\nnot read\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("vocab size: 1000") == 1
    assert proc.stdout.count("ids (") == 2 and "decoded: 你好" in proc.stdout
    assert "not read" not in proc.stdout


def test_interactive_loop_ends_on_eof(spm_model):
    proc = run("-V", "2", "-F", str(spm_model), stdin="Hello")
    assert proc.returncode == 0 and "decoded: Hello" in proc.stdout


def test_real_llama_files(llama2_model, llama3_model):
    assert run_json("-V", "2", "-F", str(llama2_model), "--text", "Hello world")["ids"] == [1, 15043, 3186]
    assert run_json("-V", "2", "--fast", "-F", str(llama2_model), "--text", "Hello world")["ids"] == [1, 15043, 3186]
    res = run_json("-V", "3", "-F", str(llama3_model), "--text", "Hello world")
    assert res["ids"] == [128000, 9906, 1917] and res["vocab_size_with_added"] == 128256
