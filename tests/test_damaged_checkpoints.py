"""Checkpoints damaged after they were saved: NaN inside a tensor, a flipped byte under a CRC, and
encrypted files. The damage is done to real files saved by MindSpore, the way a bad disk or download does it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import model_factory as mf
import reference_llama as ref
from engine import CheckpointError, ExecutorOptions, GenerationSettings, ModelSource, load_engine
from engine.weights.validation import open_weights
from fixtures import chat_engine, compile_cache_env, error_line, make_executor, run_cli

DAMAGED = "model.layers.0.attention.wq.weight"
PROMPT = [1, 15, 300, 7]
EOS = 2


def _stored_at(data: bytes, weights: dict, name: str) -> int:
    """Where tensor ``name``'s float16 bytes start in the file (found by content, not by our reader)."""
    stored = weights[name].astype(np.float16).tobytes()
    at = data.find(stored)
    assert at > 0 and data.find(stored, at + 1) == -1
    return at


@pytest.fixture(scope="module")
def nan_ckpt(llama2_tiny, tmp_path_factory) -> Path:
    """llama2_tiny with four float16 NaNs (0xFFFF) written over the start of one tensor."""
    ckpt, _, weights, _ = llama2_tiny
    data = bytearray(ckpt.read_bytes())
    at = _stored_at(bytes(data), weights, DAMAGED)
    data[at:at + 8] = b"\xff\xff" * 4
    path = tmp_path_factory.mktemp("damaged") / "nan.ckpt"
    path.write_bytes(bytes(data))
    return path


# -- NaN in the weights -------------------------------------------------------

def test_nan_weights_stop_the_answer_with_a_damaged_weights_error(nan_ckpt, llama2_tiny):
    engine = chat_engine(make_executor("mindspore", nan_ckpt, llama2_tiny[1]))
    try:
        for settings in (GenerationSettings(greedy=True, max_new_tokens=5),
                         GenerationSettings(temperature=0.8, seed=1, max_new_tokens=5)):
            tokens = []
            with pytest.raises(CheckpointError, match="weights are most likely damaged") as refused:
                engine.complete_ids(PROMPT, settings, on_token=lambda t, s: tokens.append(t))
            assert refused.value.subject == "weights" and tokens == []
            assert "--verify" not in str(refused.value)  # the engine names no front end's flags
    finally:
        engine.close()


@pytest.mark.parametrize("greedy", [False, True])
def test_cli_says_the_weights_are_damaged_and_prints_no_garbage(nan_ckpt, llama2_tiny, cli_compile_cache, greedy):
    yml = llama2_tiny[1]
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", nan_ckpt, "--backend", "mindspore",
                     "--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", "5",
                     *(["--greedy"] if greedy else ["--seed", "1"]),
                     env_extra=compile_cache_env(cli_compile_cache, yml))
    error_line(result, "damaged", "--verify")
    assert result.stdout.strip() == ""


def test_verify_names_the_damaged_tensor(nan_ckpt, llama2_tiny):
    from engine import verify_checkpoint

    assert verify_checkpoint(nan_ckpt) == [DAMAGED]
    assert verify_checkpoint(llama2_tiny[0]) == []
    bad = run_cli("run_model.py", "--verify", "-M", nan_ckpt)
    assert bad.returncode == 2 and DAMAGED in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    good = run_cli("run_model.py", "--verify", "-M", llama2_tiny[0])
    assert good.returncode == 0 and "finite" in good.stderr, good.stderr


# -- CRC ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def crc_ckpt(llama2_tiny, tmp_path_factory) -> Path:
    _, _, weights, spec = llama2_tiny
    path = tmp_path_factory.mktemp("crc") / "with_crc.ckpt"
    mf.write_ckpt(spec, weights, path, crc_check=True)
    return path


def _record(home: Path) -> dict:
    return json.loads((home / "verified_checkpoints.json").read_text(encoding="utf-8"))


def test_crc_checked_ckpt_loads_and_is_recorded_as_verified(crc_ckpt, llama2_tiny, tmp_path, cli_compile_cache):
    _, yml, weights, spec = llama2_tiny
    home = tmp_path / "home"
    result = run_cli("run_model.py", "-V", "2", "-C", yml, "-M", crc_ckpt, "--backend", "mindspore", "--prompt-ids",
                     ",".join(map(str, PROMPT)), "--greedy", "--max-new-tokens", "6", "--json", home=home,
                     env_extra=compile_cache_env(cli_compile_cache, yml))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["output_ids"] == ref.answer(weights, spec.hp, PROMPT, 6, stop={EOS})
    stat = crc_ckpt.stat()
    assert _record(home) == {f"{crc_ckpt.resolve()}|{stat.st_size}|{stat.st_mtime_ns}": "crc-ok"}


def test_crc_is_read_once_per_version_of_the_file(crc_ckpt, tmp_path, monkeypatch):
    from engine.weights.integrity import verify_crc_once

    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path / "home"))
    path = Path(shutil.copy(crc_ckpt, tmp_path / "copy.ckpt"))
    with open_weights(path) as source:
        assert source.crc is not None
        assert verify_crc_once(source) is True    # read and checked
        assert verify_crc_once(source) is False   # remembered: not read again
    assert len(_record(tmp_path / "home")) == 1
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a new version of the file
    with open_weights(path) as source:
        assert verify_crc_once(source) is True
    assert len(_record(tmp_path / "home")) == 2


def test_a_flipped_byte_under_a_crc_is_refused_before_loading(crc_ckpt, llama2_tiny, tmp_path, monkeypatch):
    _, yml, weights, _ = llama2_tiny
    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path / "home"))
    data = bytearray(crc_ckpt.read_bytes())
    data[_stored_at(bytes(data), weights, DAMAGED) + 101] ^= 0x04  # one bit: still a finite float16
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.ckpt is damaged: its CRC32 check fails") as refused:
        load_engine(ModelSource(version=2, config=yml, checkpoint=bad, need_tokenizer=False),
                    ExecutorOptions(backend="mindspore"))
    assert refused.value.subject == "weights"
    assert not (tmp_path / "home" / "verified_checkpoints.json").exists()
    error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", bad, "--prompt-ids", "1,2", home=tmp_path / "h2"),
              "flipped.ckpt", "CRC32")


def _mapped_rss(path: Path) -> int:
    """Bytes of ``path``'s memory map resident in this process (Linux's /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split(" ", 1)[0]:   # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps")
def test_the_crc_pass_reads_the_file_without_keeping_its_pages_mapped(crc_ckpt, tmp_path, monkeypatch):
    """As on Windows, which has no MADV_DONTNEED: pages read through the map would stay in the working set."""
    import mmap

    from engine.weights.integrity import verify_crc_once

    monkeypatch.delattr(mmap, "MADV_DONTNEED", raising=False)
    monkeypatch.setenv("LLAMA_DESK_HOME", str(tmp_path / "home"))
    path = Path(shutil.copy(crc_ckpt, tmp_path / "copy.ckpt"))
    with open_weights(path) as source:
        before = _mapped_rss(path)
        assert verify_crc_once(source) is True
        after = _mapped_rss(path)
    assert path.stat().st_size > 8_000_000
    assert after - before < 1_000_000, (before, after)   # through the map it would be the whole file


def test_a_record_that_cannot_be_written_does_not_fail_the_check(crc_ckpt, tmp_path, monkeypatch, caplog):
    """A locked (Windows) or read-only record file: the check passed, the load goes on, next time it checks again."""
    from engine.weights.integrity import verify_crc_once

    home = tmp_path / "home"
    (home / "verified_checkpoints.json").mkdir(parents=True)   # in the way of the record
    monkeypatch.setenv("LLAMA_DESK_HOME", str(home))
    path = Path(shutil.copy(crc_ckpt, tmp_path / "copy.ckpt"))
    with open_weights(path) as source:
        assert verify_crc_once(source) is True
        assert verify_crc_once(source) is True    # not remembered: checked again
    assert "could not note" in caplog.text and "checked again next time" in caplog.text


# -- encrypted ---------------------------------------------------------------

def test_encrypted_ckpt_is_refused_by_name(llama2_tiny, tmp_path):
    _, yml, weights, spec = llama2_tiny
    path = tmp_path / "secret.ckpt"
    mf.write_ckpt(spec, weights, path, enc_key=b"0123456789abcdef")
    with pytest.raises(CheckpointError, match=r"secret\.ckpt is an encrypted MindSpore checkpoint"):
        open_weights(path)
    error_line(run_cli("run_model.py", "-V", "2", "-C", yml, "-M", path, "--prompt-ids", "1,2"),
              "secret.ckpt", "encrypted")
