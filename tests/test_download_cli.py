"""``python -m checkpoint_download`` as a user runs it: exit codes, one-line errors, a real kill and resume."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from checkpoint_download.local_files import SYNC_EVERY, human
from download_server import Behaviour, DownloadServer, payload, sha256

ROOT = Path(__file__).resolve().parent.parent
DATA = payload(4_000_000, seed=3)


@pytest.fixture()
def behaviour():
    return Behaviour(files={"/model.ckpt": DATA})


@pytest.fixture()
def server(behaviour):
    with DownloadServer(behaviour) as url:
        yield url


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return {**out, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}


def cli(*args: str, script: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (script or [sys.executable, "-m", "checkpoint_download"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", env=env(), timeout=60, cwd=ROOT)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_fetch_succeeds_and_says_what_was_verified(server, tmp_path):
    out = tmp_path / "model.ckpt"
    run = cli("fetch", f"{server}/missing.ckpt", f"{server}/model.ckpt", "-o", str(out), "--sha256", sha256(DATA))
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == DATA
    assert "does not have the file (HTTP 404); trying the next mirror" in run.stderr
    assert "size and sha256 match the checksum you gave" in run.stderr


def test_fetch_that_cannot_succeed_exits_2_with_one_line(server, tmp_path):
    out = tmp_path / "model.ckpt"
    run = cli("fetch", f"{server}/missing.ckpt", "-o", str(out))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == last_line(run.stderr)  # exactly one line
    assert last_line(run.stderr).startswith("error: Could not download model.ckpt: 127.0.0.1:")
    assert "does not have the file (HTTP 404)" in run.stderr and not out.exists()

    run = cli("fetch", f"{server}/model.ckpt", "-o", str(out), "--sha256", "f" * 64)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert last_line(run.stderr).startswith(f"error: model.ckpt's sha256 is {sha256(DATA)}, which does not match the "
                                            f"checksum you gave ({'f' * 64})")
    assert not out.exists() and (tmp_path / "model.ckpt.bad").read_bytes() == DATA

    run = cli("fetch", f"{server}/model.ckpt", "-o", str(out), "--sha256", "not-a-hash")
    assert run.returncode == 2 and run.stderr.strip() == "error: --sha256: 'not-a-hash' is not a SHA-256 (64 hexadecimal characters)."


def test_killed_download_resumes_where_it_stopped(server, behaviour, tmp_path):
    behaviour.bytes_per_s = 1_500_000
    out, part = tmp_path / "model.ckpt", tmp_path / "model.ckpt.part"
    args = [sys.executable, "-m", "checkpoint_download", "fetch", f"{server}/model.ckpt", "-o", str(out),
            "--sha256", sha256(DATA)]
    proc = subprocess.Popen(args, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size > 3_000_000):
            assert time.monotonic() < end and proc.poll() is None, "the download did not start"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    kept = part.read_bytes()
    assert 3_000_000 < len(kept) < len(DATA) and kept == DATA[:len(kept)] and not out.exists()

    behaviour.bytes_per_s = None
    run = cli(*args[3:])
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == DATA and not part.exists() and not (tmp_path / "model.ckpt.part.json").exists()
    # a killed run did not fsync its last bytes: those (at most SYNC_EVERY) are fetched again, the rest kept
    resumed_at = len(kept) - SYNC_EVERY
    assert behaviour.requests[-1] == ("/model.ckpt", f"bytes={resumed_at}-", 206)
    assert f"resuming at {human(resumed_at)}" in run.stderr and "may not have reached the disk" in run.stderr


def test_get_downloads_a_model_and_list_shows_it(server, tmp_path):
    manifest = tmp_path / "models.yaml"
    manifest.write_text(yaml.safe_dump({"models": {"tiny": {"description": "a test model", "files": [
        {"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}]}}}), encoding="utf-8")
    dest = tmp_path / "out"
    run = cli("--manifest", str(manifest), "tiny", "-o", str(dest))  # "get" is implied
    assert run.returncode == 0, run.stderr
    assert (dest / "model.ckpt").read_bytes() == DATA
    assert "no published checksum: recorded sha256 " + sha256(DATA) in run.stderr
    assert last_line(run.stderr) == f"tiny: 1 files ready in {dest}"

    run = cli("--manifest", str(manifest), "list", "tiny", "-o", str(dest))
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if "model.ckpt" in line)
    assert line.split() == ["model.ckpt", "4.0", "MB", "sha256", "recorded", line.split()[5], "present"]


def test_list_shows_the_real_manifest_and_the_old_script_still_works():
    run = cli("list")
    assert run.returncode == 0, run.stderr
    for text in ("llama2:", "llama2_7b.ckpt", "llama3:", "llama3-8B.ckpt", "llama2-hf:", "llama3-hf:"):
        assert text in run.stdout
    tokenizer = next(line for line in run.stdout.splitlines() if "tokenizer.model" in line)
    assert "499.7 kB  sha256 published" in tokenizer

    run = cli("llama9", script=[sys.executable, str(ROOT / "checkpoint_download" / "download.py")])
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: Unknown model 'llama9'. Choose one of: llama2, llama3, llama2-hf, llama3-hf "
                                  "(python -m checkpoint_download list shows them).")
