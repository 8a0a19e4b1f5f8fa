"""The engine's messages speak of files and choices, never of one front end's flags or scripts; the command
line adds its own hint (-M, -F, -V, the download script) from the error's structured fields."""

from __future__ import annotations

import os
import re

import pytest

import model_factory as mf
from engine import EngineError, ExecutorOptions, ModelSource, load_engine
from fixtures import error_line, run_cli

CLI_WORDS = re.compile(r"(?<![\w-])(-[MFVC]|--[a-z][\w-]*)\b|download\.(cmd|sh)")
SCRIPT = "download.cmd" if os.name == "nt" else "download.sh"


def _case(name, llama2_tiny, spm_model, tiktoken_file, tmp_path):
    """(load_engine arguments, what the CLI hint must add, expected error fields) for one mistake."""
    ckpt, yml, _, _ = llama2_tiny
    if name == "missing checkpoint":
        return (2, yml, spm_model, tmp_path / "nope.ckpt"), ["-M", SCRIPT], ("checkpoint", tmp_path / "nope.ckpt", None)
    if name == "missing tokenizer":
        return (2, yml, tmp_path / "nope.model", ckpt), ["-F", SCRIPT], ("tokenizer", tmp_path / "nope.model", None)
    if name == "LLaMA3 tokenizer as LLaMA2":
        return (2, yml, tiktoken_file, ckpt), ["use -V 3"], ("tokenizer", tiktoken_file, 3)
    if name == "LLaMA2 checkpoint with a LLaMA3 config":
        yml3 = mf.write_yaml(mf.LLAMA3_CHUNKED, tmp_path / "llama3.yaml")
        return (3, yml3, None, ckpt), ["use -V 2 -C configs/predict_llama2_7b.yaml"], ("checkpoint", ckpt, 2)
    raise KeyError(name)


CASES = ["missing checkpoint", "missing tokenizer", "LLaMA3 tokenizer as LLaMA2", "LLaMA2 checkpoint with a LLaMA3 config"]


@pytest.mark.parametrize("name", CASES)
def test_engine_errors_name_files_not_flags_and_the_cli_adds_its_hint(name, llama2_tiny, spm_model, tiktoken_file,
                                                                        tmp_path):
    (version, yml, tokenizer, ckpt), hint, (subject, path, suggested) = _case(name, llama2_tiny, spm_model,
                                                                               tiktoken_file, tmp_path)
    with pytest.raises(EngineError) as refused:
        load_engine(ModelSource(version=version, config=yml, tokenizer=tokenizer, checkpoint=ckpt,
                                need_tokenizer=tokenizer is not None), ExecutorOptions(backend="mindspore"))
    message = str(refused.value)
    assert not CLI_WORDS.search(message), message
    assert (refused.value.subject, refused.value.path, refused.value.suggested_version) == (subject, path, suggested)
    assert path.name in message

    args = ["-V", str(version), "-C", yml, "-M", ckpt] + (["-F", tokenizer] if tokenizer else []) + ["--prompt", "hi"]
    line = error_line(run_cli("run_model.py", *args))
    assert message in line  # the engine's words, unchanged...
    for words in hint:      # ...and the command line's own advice after them
        assert words in line[line.index(message) + len(message):], line


def test_missing_default_checkpoint_message_names_no_script(llama2_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_DESK_MODELS_DIR", str(tmp_path / "models"))  # nothing downloaded there
    with pytest.raises(EngineError, match="Checkpoint not found") as refused:
        load_engine(ModelSource(version=2, config=llama2_tiny[1]), ExecutorOptions(backend="mindspore"))
    assert str(tmp_path / "models" / "llama2" / "llama2_7b.ckpt") in str(refused.value)
    assert not CLI_WORDS.search(str(refused.value)), str(refused.value)
