"""engine.paths owns every folder: an installed copy downloads where it reads, and the chosen models folder wins.

The "installed" condition is made the way engine.paths tells it: the packages and root modules side by
side in a folder without the project's pyproject.toml (what pip puts in site-packages).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

import reference_llama as ref
from download_server import Behaviour, DownloadServer
from fixtures import ROOT, compile_cache_env

PROMPT = [1, 15, 300, 7]


def installed_copy(tmp_path: Path) -> Path:
    """What a wheel install puts in site-packages: the packages (with their data files) and the root modules."""
    site = tmp_path / "site-packages 包"
    skip = shutil.ignore_patterns("__pycache__", "*.sh", "*.cmd", "llama2", "llama3", "*-hf")
    for package in ("engine", "checkpoint_download", "configs"):
        shutil.copytree(ROOT / package, site / package, ignore=skip)
    for module in ("run_model.py", "cli_support.py"):
        shutil.copy2(ROOT / module, site / module)
    return site


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No proxy for the local server, and nothing that points at the checkout or a chosen folder."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and k not in ("PYTHONPATH", "LLAMA_DESK_MODELS_DIR")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", "LLAMA_DESK_HOME": str(home), "PYTHONIOENCODING": "utf-8",
            "GLOG_v": "3", **extra}


def manifest_for(url: str, folder: Path, files: list[str]) -> Path:
    """A models.yaml whose llama2 entry is served by the local test server."""
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {"llama2": {"description": "test", "folder": "llama2", "files": [
        {"name": name, "mirrors": [f"{url}/{name}"]} for name in files]}}}), encoding="utf-8")
    return path


def test_an_installed_copy_downloads_into_the_user_data_models_folder_that_run_model_reads(
        tmp_path, llama2_tiny, spm_model, cli_compile_cache):
    ckpt, yml, weights, spec = llama2_tiny
    site = installed_copy(tmp_path)
    home = tmp_path / "用户 home"
    env = clean_env(home)
    behaviour = Behaviour(files={"/llama2_7b.ckpt": ckpt.read_bytes(), "/tokenizer.model": spm_model.read_bytes()})
    with DownloadServer(behaviour) as url:
        manifest = manifest_for(url, tmp_path, ["tokenizer.model", "llama2_7b.ckpt"])
        got = subprocess.run([sys.executable, "-m", "checkpoint_download", "--manifest", str(manifest), "llama2"],
                             cwd=site, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    folder = home / "checkpoints" / "llama2"  # the user-data folder: an upgrade or uninstall leaves it alone
    assert (folder / "llama2_7b.ckpt").read_bytes() == ckpt.read_bytes()
    assert not list((site / "checkpoint_download").rglob("*.ckpt"))

    ran = subprocess.run([sys.executable, str(site / "run_model.py"), "-V", "2", "-C", str(yml), "--backend",
                          "mindspore", "--prompt-ids", ",".join(map(str, PROMPT)), "--greedy", "--max-new-tokens",
                          "6", "--json"], cwd=tmp_path, env={**env, **compile_cache_env(cli_compile_cache, yml)},
                         capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["model"]["checkpoint"] == str(folder / "llama2_7b.ckpt") and out["model"]["tokenizer"]
    # with the downloaded 1000-piece tokenizer, the engine picks among the ids it can decode
    assert out["output_ids"] == ref.answer(weights, spec.hp, PROMPT, 6, stop={spec.eos}, limit=1000)


def test_the_chosen_models_folder_is_where_the_downloader_writes_and_the_defaults_point(tmp_path, monkeypatch):
    from engine import paths

    home, chosen = tmp_path / "home 家", tmp_path / "D盘" / "模型"
    monkeypatch.setenv("LLAMA_DESK_HOME", str(home))
    monkeypatch.delenv("LLAMA_DESK_MODELS_DIR", raising=False)
    assert paths.is_source_checkout() and paths.models_dir() == ROOT / "checkpoint_download"
    paths.choose_models_dir(chosen)
    assert chosen.is_dir() and paths.models_dir() == chosen
    assert paths.default_model_files(3)["checkpoint"] == chosen / "llama3" / "llama3-8B.ckpt"
    behaviour = Behaviour(files={"/tokenizer.model": b"spm bytes"})
    with DownloadServer(behaviour) as url:
        manifest = manifest_for(url, tmp_path, ["tokenizer.model"])
        got = subprocess.run([sys.executable, "-m", "checkpoint_download", "--manifest", str(manifest), "llama2"],
                             cwd=ROOT, env=clean_env(home), capture_output=True, text=True, encoding="utf-8",
                             timeout=120)
    assert got.returncode == 0, got.stderr[-3000:]
    assert (chosen / "llama2" / "tokenizer.model").read_bytes() == b"spm bytes"

    monkeypatch.setenv("LLAMA_DESK_MODELS_DIR", str(tmp_path / "env 模型"))  # still overrides everything
    assert paths.models_dir() == tmp_path / "env 模型"
    monkeypatch.delenv("LLAMA_DESK_MODELS_DIR")
    (home / paths.MODELS_CHOICE_FILE).write_text("{not json", encoding="utf-8")  # a damaged choice: the default
    assert paths.models_dir() == ROOT / "checkpoint_download"
    paths.choose_models_dir(chosen)
    paths.choose_models_dir(None)
    assert paths.models_dir() == ROOT / "checkpoint_download" and not (home / paths.MODELS_CHOICE_FILE).exists()
