"""The installers' logic and build: pip command lines, mirrors, shortcuts, uninstall, the lock, the NSIS .exe.

The end-to-end install on Linux is tests/test_installer_linux.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))
import build_bundle  # noqa: E402
import build_windows  # noqa: E402
import icon  # noqa: E402
import setup_llama_desk as setup  # noqa: E402
import shortcuts  # noqa: E402
from setup_llama_desk import Plan  # noqa: E402

NASTY = "llama desk 测试/it's $HOME \"quoted\" 100% a\\b"  # spaces, Chinese, quote, dollar, percent, backslash


def desktop_exec_argv(exec_value: str) -> list[str]:
    """How a desktop environment reads an Exec value (Desktop Entry Specification 1.5, "The Exec key"):
    the string's escapes first, then arguments split at spaces outside double quotes, where a backslash
    makes the next of " ` $ \\ literal; %% is a literal %."""
    text = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), exec_value)
    args, current, quoted, i = [], None, False, 0
    while i < len(text):
        c = text[i]
        if quoted and c == "\\" and text[i + 1:i + 2] in ('"', "`", "$", "\\"):
            current, i = current + text[i + 1], i + 2
            continue
        if c == '"':
            quoted, current = not quoted, current or ""
        elif c == " " and not quoted:
            if current is not None:
                args.append(current)
            current = None
        elif c == "%" and text[i + 1:i + 2] == "%":
            current, i = (current or "") + "%", i + 1
        else:
            current = (current or "") + c
        i += 1
    assert not quoted, f"unbalanced quotes in {exec_value!r}"
    return args + ([current] if current is not None else [])


def desktop_keys(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# -- pip command lines ----------------------------------------------------------

def test_pip_commands_keep_paths_with_spaces_and_chinese_as_one_argument_each(tmp_path):
    prefix = tmp_path / "llama desk 测试" / "程序"
    source = tmp_path / "源码 folder"
    lock = tmp_path / "lock file.txt"
    plan = Plan(prefix=prefix, source=str(source), constraints=lock, platform="linux")
    project, model = setup.install_commands(plan)
    assert project[:3] == [str(prefix / "venv" / "bin" / "python"), "-m", "pip"]
    assert project[-3:] == ["--constraint", str(lock), str(source)]
    assert model[-2:] == ["--no-deps", setup.BUILTIN_MODEL] and "--constraint" not in model
    assert "--index-url" not in project + model  # no mirror asked: pip's own configuration decides


def test_windows_plan_runs_pythonw_from_the_venv_or_the_private_runtime(tmp_path):
    plan = Plan(prefix=Path("C:/Users/张三/AppData/Local/Programs/llama-desk"), source="x.whl", platform="win32")
    assert plan.python == plan.prefix / "venv" / "Scripts" / "python.exe"
    assert plan.gui_python == plan.prefix / "venv" / "Scripts" / "pythonw.exe"
    runtime = Path("C:/Users/张三/AppData/Local/Programs/llama-desk/python/python.exe")
    in_place = Plan(prefix=plan.prefix, source="x.whl", platform="win32", in_place=True, base_python=runtime)
    assert in_place.python == runtime and in_place.gui_python == runtime.with_name("pythonw.exe")


@pytest.mark.parametrize("choice, url", [
    ("tuna", "https://pypi.tuna.tsinghua.edu.cn/simple"),
    ("ALIYUN", "https://mirrors.aliyun.com/pypi/simple/"),
    ("pypi", "https://pypi.org/simple"),
    ("https://example.org/simple", "https://example.org/simple"),
    (None, None),
])
def test_mirror_choice_becomes_the_index_url(choice, url):
    assert setup.mirror_url(choice) == url
    plan = Plan(prefix=Path("p"), source="s", index_url=setup.mirror_url(choice))
    options = setup.index_options(plan)
    assert options == (["--index-url", url] if url else [])
    for command in setup.install_commands(plan):
        assert (command[command.index("--index-url") + 1] == url) if url else "--index-url" not in command


def test_an_unknown_mirror_is_refused_with_the_choices():
    with pytest.raises(setup.SetupError, match="tuna, aliyun, huawei"):
        setup.mirror_url("tsinghua-typo")


def test_offline_wheels_replace_any_index(tmp_path):
    plan = Plan(prefix=tmp_path, source="s", index_url=setup.MIRRORS["tuna"], wheels=tmp_path / "wheels 轮子")
    for command in setup.install_commands(plan):
        assert "--index-url" not in command
        assert command[command.index("--no-index") + 1:command.index("--no-index") + 3] == [
            "--find-links", str(tmp_path / "wheels 轮子")]


def test_pip_runs_from_its_wheel_where_the_runtime_has_no_pip():
    """The embeddable runtime has no pip: the installer runs the pip wheel it carries, as ensurepip does."""
    wheel = build_windows.bundled_pip_wheel()
    plan = Plan(prefix=Path("p"), source="s", in_place=True, pip_wheel=wheel)
    done = subprocess.run(setup.pip_command(plan) + ["--version"], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONNOUSERSITE": "1"})
    assert done.stdout.startswith("pip ") and str(wheel) in done.stdout


def test_dry_run_prints_the_commands_and_installs_nothing(tmp_path):
    prefix = tmp_path / "llama desk 测试"
    done = subprocess.run([sys.executable, str(ROOT / "installer" / "setup_llama_desk.py"), "--dry-run",
                           "--prefix", str(prefix), "--mirror", "aliyun"],
                          capture_output=True, text=True, encoding="utf-8", check=True)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("https://mirrors.aliyun.com/pypi/simple/" in line for line in lines)
    python = Plan(prefix=prefix, source="s").python
    assert (shlex.split(lines[0])[0] == str(python)) if os.name == "posix" else str(python) in lines[0]
    assert not prefix.exists()


def test_the_built_in_model_is_the_one_install_py_installs():
    sys.path.insert(0, str(ROOT))
    import install
    from engine.builtin_model import INSTALL_HINT
    assert setup.BUILTIN_MODEL == install.BUILTIN_MODEL and INSTALL_HINT.endswith(setup.BUILTIN_MODEL)


def test_an_install_folder_too_deep_for_windows_paths_is_refused_before_pip_starts():
    short = Path(r"C:\Users\张三\AppData\Local\Programs\llama-desk\venv\Lib\site-packages")
    setup.check_path_room(short, "win32")
    deep = Path("C:/Users/张三/Documents/" + "a very long folder name " * 4 + "/llama-desk/venv/Lib/site-packages")
    with pytest.raises(setup.SetupError, match="too long"):
        setup.check_path_room(deep, "win32")
    setup.check_path_room(deep, "win32", long_paths=True)
    setup.check_path_room(deep, "linux")


def test_the_longest_path_allowance_covers_the_locked_windows_wheels():
    """LONGEST_FILE is measured: PySide6-Essentials' deepest file. The lock pins the version it was measured on."""
    assert build_bundle.read_lock()["pyside6-essentials"] == "6.11.3", "re-measure setup_llama_desk.LONGEST_FILE"


# -- places ---------------------------------------------------------------------

def test_default_places_per_user_without_admin_rights(monkeypatch):
    windows = {"LOCALAPPDATA": r"C:\Users\张三\AppData\Local"}
    assert setup.default_prefix(windows, "win32") == Path(windows["LOCALAPPDATA"]) / "Programs" / "llama-desk"
    linux = {"XDG_DATA_HOME": "/home/u/数据"}
    assert setup.default_prefix(linux, "linux") == Path("/home/u/数据/llama-desk-app")


def test_the_installed_interpreter_says_where_the_data_is(tmp_path, monkeypatch):
    """The setup script asks the copy it installed (engine.paths) instead of knowing the folders itself."""
    import venv
    environment = tmp_path / "venv 环境"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "llama_desk_project.pth").write_text(str(ROOT) + "\n", encoding="utf-8")  # as a wheel puts it there
    home = tmp_path / "数据 home"
    monkeypatch.setenv("LLAMA_DESK_HOME", str(home))
    from engine import paths
    assert setup.data_layout(python) == paths.data_layout() and paths.data_layout()["user_data"] == str(home)


# -- shortcuts --------------------------------------------------------------------

def test_desktop_entry_starts_the_installed_launcher_whatever_the_path(tmp_path):
    launcher = tmp_path / NASTY / "venv" / "bin" / "llama-desk"
    text = shortcuts.desktop_entry([str(launcher)], tmp_path / NASTY / "llama-desk.png", tmp_path / NASTY)
    keys = desktop_keys(text)
    assert desktop_exec_argv(keys["Exec"]) == [str(launcher)]
    assert keys["Terminal"] == "false" and keys["Type"] == "Application" and keys["Name"] == "llama-desk"
    validate = shutil.which("desktop-file-validate")
    if validate:
        path = tmp_path / "llama-desk.desktop"
        path.write_text(text, encoding="utf-8")
        done = subprocess.run([validate, str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_windows_shortcuts_get_their_paths_through_the_environment(tmp_path):
    prefix = Path(r"C:\Users\张三\AppData\Local\Programs\llama desk")
    plan = Plan(prefix=prefix, source="s", platform="win32")
    command, env = shortcuts.windows_shortcut_command(plan, prefix / "llama-desk.ico")
    assert command[0] == "powershell.exe" and not any("张三" in part for part in command)
    assert env == {"LLAMA_DESK_TARGET": str(prefix / "venv" / "Scripts" / "pythonw.exe"),
                   "LLAMA_DESK_ARGUMENTS": "-I -m app", "LLAMA_DESK_WORKDIR": str(prefix),
                   "LLAMA_DESK_ICON": str(prefix / "llama-desk.ico")}
    assert "$link.Arguments = $env:LLAMA_DESK_ARGUMENTS" in command[-1] and "GetFolderPath('Desktop')" in command[-1]


def test_the_app_starts_from_the_installed_package_whatever_lies_in_the_working_folder(tmp_path):
    """A shortcut's working folder holding an ``app`` (or ``engine``) folder must not replace the installed one."""
    shadow = tmp_path / "app"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("", encoding="utf-8")
    (shadow / "__main__.py").write_text("print('SHADOWED')", encoding="utf-8")
    done = subprocess.run([sys.executable, *setup.APP_ARGUMENTS, "--help"], cwd=tmp_path, capture_output=True,
                          text=True, encoding="utf-8", timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})   # -I ignores this too
    assert done.returncode == 0 and "SHADOWED" not in done.stdout and "usage: llama-desk" in done.stdout, done
    include = build_windows.user_data_include()
    assert f'!define APP_ARGS "{" ".join(setup.APP_ARGUMENTS)}"' in include      # the Windows shortcuts' arguments
    script = (ROOT / "installer" / "llama-desk.nsi").read_text(encoding="utf-8")
    assert script.count('"$GuiPython" "${APP_ARGS}"') == 2 and "-m app" not in script.replace("-I -m app", "")


def test_the_icon_is_a_real_png_and_ico():
    from PySide6.QtGui import QColor, QImage
    data = icon.png(64)
    image = QImage.fromData(data, "PNG")
    assert (image.width(), image.height()) == (64, 64)
    assert image.pixelColor(0, 0).alpha() == 0                          # rounded corner: transparent
    assert image.pixelColor(32, 16) == QColor(255, 255, 255)            # the speech bubble
    assert image.pixelColor(32, 60).name() == QColor(*icon.BLUE).name()  # the tile
    ico = icon.ico((16, 256))
    reserved, kind, count = struct.unpack_from("<HHH", ico)
    assert (reserved, kind, count) == (0, 1, 2)
    for n, size in enumerate((16, 256)):
        width, height, _, _, _, bits, length, offset = struct.unpack_from("<BBBBHHII", ico, 6 + 16 * n)
        assert (width, height, bits) == (size % 256, size % 256, 32)
        assert QImage.fromData(ico[offset:offset + length], "PNG").width() == size


# -- uninstall ----------------------------------------------------------------------

def fake_installation(tmp_path: Path, monkeypatch) -> tuple[Path, Path, Path]:
    """A prefix as install() leaves it (without the 3 GB environment), a desktop entry and some user data."""
    prefix = tmp_path / "llama desk 测试" / "程序"
    (prefix / "venv" / "bin").mkdir(parents=True)
    entry = tmp_path / "xdg" / "applications" / "llama-desk.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\n", encoding="utf-8")
    (prefix / "llama-desk.png").write_bytes(icon.png(16))
    shutil.copy2(setup.__file__, prefix / "setup_llama_desk.py")
    manifest = {"environment": str(prefix / "venv"), "created": [str(prefix / "llama-desk.png"), str(entry)]}
    (prefix / "install.json").write_text(json.dumps(manifest), encoding="utf-8")
    data = tmp_path / "我的 data"
    (data / "logs").mkdir(parents=True)
    (data / "chats.sqlite3").write_text("my conversations", encoding="utf-8")
    (data / "settings.json").write_text("{}", encoding="utf-8")
    (data / "checkpoints" / "llama2").mkdir(parents=True)
    (data / "checkpoints" / "llama2" / "llama2_7b.ckpt").write_text("13.5 GB of download", encoding="utf-8")
    monkeypatch.setenv("LLAMA_DESK_HOME", str(data))
    from engine.paths import data_layout
    manifest["data"] = data_layout()  # what install() records, from the installed engine.paths
    (prefix / "install.json").write_text(json.dumps(manifest), encoding="utf-8")
    return prefix, entry, data


def test_uninstall_removes_the_program_and_keeps_the_conversations(tmp_path, monkeypatch):
    prefix, entry, data = fake_installation(tmp_path, monkeypatch)
    done = subprocess.run([sys.executable, str(prefix / "setup_llama_desk.py"), "--uninstall"],
                          capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    assert not prefix.exists() and not entry.exists()
    assert (data / "chats.sqlite3").read_text(encoding="utf-8") == "my conversations"
    assert str(data) in done.stdout


def test_uninstall_with_remove_data_deletes_only_what_the_app_wrote(tmp_path, monkeypatch, capsys):
    prefix, entry, data = fake_installation(tmp_path, monkeypatch)
    (prefix / "my notes.txt").write_text("not ours", encoding="utf-8")
    (data / "my notes.txt").write_text("not ours either", encoding="utf-8")
    setup.uninstall(prefix, delete_data=True)
    assert sorted(p.name for p in prefix.iterdir()) == ["my notes.txt"]  # a folder the user chose stays
    assert sorted(p.name for p in data.iterdir()) == ["checkpoints", "my notes.txt"]  # downloads are kept
    assert (data / "checkpoints" / "llama2" / "llama2_7b.ckpt").read_text(encoding="utf-8") == "13.5 GB of download"
    assert f"The downloaded models (0.0 GB in {data / 'checkpoints'}) are kept" in capsys.readouterr().out
    with pytest.raises(setup.SetupError, match="install.json"):
        setup.uninstall(prefix)


def test_uninstall_deletes_the_downloads_only_when_asked_apart(tmp_path, monkeypatch):
    prefix, entry, data = fake_installation(tmp_path, monkeypatch)
    done = subprocess.run([sys.executable, str(prefix / "setup_llama_desk.py"), "--uninstall", "--remove-data",
                           "--remove-downloads"], capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    assert not data.exists() and not prefix.exists()


def nsis_macro(include: str, name: str) -> list[str]:
    """What a macro of the generated user_data.nsh deletes (the names after $DataDir)."""
    body = include.split(f"!macro {name}", 1)[1].split("!macroend", 1)[0]
    return [line.split('"$DataDir\\', 1)[1].rstrip('"') for line in body.splitlines()
            if line.strip().startswith(("Delete ", "RMDir /r "))]


def test_the_windows_uninstaller_removes_what_engine_paths_calls_ours_and_the_downloads_apart():
    from engine import paths
    include = build_windows.user_data_include()
    assert nsis_macro(include, "RemoveOurData") == list(paths.OUR_FILES) + list(paths.OUR_FOLDERS)
    assert nsis_macro(include, "RemoveDownloads") == list(paths.DOWNLOAD_FOLDERS)
    assert f'!define DATA_HOME_ENV "{paths.HOME_ENV}"' in include.splitlines()
    assert f'!define APP_MUTEX "{paths.APP_RUNNING_MUTEX}"  ; held by the running app' in include.splitlines()
    script = (ROOT / "installer" / "llama-desk.nsi").read_text(encoding="utf-8")
    assert "!insertmacro RemoveOurData" in script and "!insertmacro RemoveDownloads" in script
    assert "$DataDir\\checkpoints" not in script.split("LangString")[0]      # the folders come from engine.paths
    for language in ("ENGLISH", "SIMPCHINESE"):                            # the downloads' box shows their size
        line = next(s for s in script.splitlines() if s.startswith(f"LangString AskRemoveDownloads ${{LANG_{language}}}"))
        assert "$DownloadsSize" in line


def test_each_setup_exit_code_has_its_own_message_in_both_languages():
    script = (ROOT / "installer" / "llama-desk.nsi").read_text(encoding="utf-8")
    function = script.split("Function SetupFailed", 1)[1].split("FunctionEnd", 1)[0]
    cases = dict(re.findall(r"\$\{Case\} (\d+)\s+MessageBox MB_ICONSTOP \$\((\w+)\)", function))
    assert sorted(int(code) for code in cases) == sorted(setup.EXIT_CODES)
    assert len(set(cases.values())) == len(cases)                        # each its own
    for name in list(cases.values()) + ["SetupFailed"]:
        for language in ("ENGLISH", "SIMPCHINESE"):
            assert re.search(rf'^LangString {name} \$\{{LANG_{language}\}} ".+"$', script, re.M), (name, language)


def run_setup(*args: str, python: Path = Path(sys.executable)) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(ROOT / "installer" / "setup_llama_desk.py"), *args],
                          capture_output=True, text=True, encoding="utf-8", timeout=600)


def test_the_setup_steps_fail_with_their_own_exit_codes(tmp_path):
    import venv

    done = run_setup("--mirror", "tsinghua-typo", "--prefix", str(tmp_path / "p"))
    assert done.returncode == setup.EXIT_OPTIONS and "unknown mirror" in done.stderr
    # packages that cannot be had (an offline folder without them), installed as the Windows installer does it:
    # into the runtime's own Python (here a fresh one, without pip), pip run from its wheel
    runtime = tmp_path / "runtime"
    venv.EnvBuilder(with_pip=False).create(runtime)
    python = runtime / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    done = run_setup("--in-place", "--pip-wheel", str(build_windows.bundled_pip_wheel()), "--wheels",
                     str(tmp_path / "runtime"), "--no-lock", "--no-shortcuts", "--prefix", str(tmp_path / "p"),
                     python=python)
    assert done.returncode == setup.EXIT_PACKAGES, done.stderr[-2000:]
    assert "pip could not install llama-desk and its packages" in done.stderr and "Traceback" not in done.stderr


# -- the lock and the Windows wheels --------------------------------------------------

def test_the_lock_pins_every_dependency_within_pyproject_ranges():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is part of Python 3.11+")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = build_bundle.read_lock()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    for line in dependencies:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in installer/requirements-lock.txt: python installer/build_bundle.py --lock"
        assert req.specifier.contains(pins[name]), (
            f"the lock has {name}=={pins[name]}, outside pyproject's {req.specifier}: python installer/build_bundle.py --lock")
    assert pins["colorama"]  # what only Windows needs (tqdm on Windows), which pip alone would leave out


def test_the_windows_closure_adds_what_only_windows_markers_require():
    def item(name, requires, requested=False):
        return {"metadata": {"name": name, "version": "1", "requires_dist": requires}, "requested": requested}
    items = [item("app", ["tqdm", "uvloop; sys_platform != 'win32'"], requested=True),
             item("tqdm", ["colorama; platform_system == 'Windows'", "pytest; extra == 'dev'"]),
             item("uvloop", [])]
    needed, missing = build_bundle.windows_closure(items)
    assert needed == {"app", "tqdm"} and missing == ["colorama"]


def pypi_reachable() -> bool:
    if os.environ.get("LLAMA_DESK_TEST_OFFLINE") == "1":
        return False
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def app_wheel(tmp_path_factory) -> Path:
    return build_windows.build_app_wheel(tmp_path_factory.mktemp("app wheel 轮子"))


def test_every_locked_package_has_a_win_amd64_cp311_wheel_on_pypi(app_wheel):
    """What the Windows installer downloads (or the offline bundle carries) exists: a wheel for each, no compiler."""
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable (or LLAMA_DESK_TEST_OFFLINE=1)")
    pins = build_bundle.read_lock()
    items = build_bundle.resolve_for_windows([str(app_wheel)], [], ROOT / "installer" / setup.LOCK)
    resolved = {build_bundle.canonicalize_name(i["metadata"]["name"]): i for i in items}
    assert set(resolved) - {"llama-desk"} == set(pins), "python installer/build_bundle.py --lock"
    for name, found in resolved.items():
        file = found["download_info"]["url"].rsplit("/", 1)[-1]
        assert found["metadata"]["version"] == pins.get(name, found["metadata"]["version"])
        assert file.endswith(("-win_amd64.whl", "-none-any.whl")), file
        assert re.search(r"-(cp311|abi3|none)-", file), file


# -- the Windows installer (.exe) --------------------------------------------------------

def seven_zip_listing(exe: Path) -> set[str]:
    done = subprocess.run(["7z", "l", "-slt", str(exe)], capture_output=True, text=True, check=True)
    assert "Type = Nsis" in done.stdout and "NSIS-3 Unicode 64-bit" in done.stdout, done.stdout[:2000]
    return {line[len("Path = "):] for line in done.stdout.splitlines() if line.startswith("Path = ")} - {str(exe)}


needs_makensis = pytest.mark.skipif(shutil.which("makensis") is None,
                                    reason="makensis is not installed (apt-get install nsis; .ci/run installs it)")
needs_7z = pytest.mark.skipif(shutil.which("7z") is None, reason="7z is not installed (apt-get install p7zip-full)")


@needs_makensis
@needs_7z
def test_the_online_windows_installer_builds_and_carries_the_app(app_wheel, tmp_path):
    exe = build_windows.build(tmp_path / "dist 输出", app_wheel=app_wheel, stage=tmp_path / "stage 暂存")
    assert exe.name == f"llama-desk-{build_windows.project_version()}-setup.exe" and exe.read_bytes()[:2] == b"MZ"
    files = seven_zip_listing(exe)
    pip_wheel = build_windows.bundled_pip_wheel().name
    assert {"llama-desk.ico", "uninstall.exe", "setup/setup_llama_desk.py", "setup/get_python.ps1",
            "setup/requirements-lock.txt", f"setup/{app_wheel.name}", f"setup/{pip_wheel}"} <= files
    assert not any(name.startswith("setup/wheels/") or name.endswith("-embed-amd64.zip") for name in files)
    out = tmp_path / "unpacked"
    subprocess.run(["7z", "x", "-y", f"-o{out}", str(exe), "setup/setup_llama_desk.py", f"setup/{app_wheel.name}"],
                   check=True, capture_output=True)
    assert (out / "setup" / "setup_llama_desk.py").read_bytes() == Path(setup.__file__).read_bytes()
    with zipfile.ZipFile(out / "setup" / app_wheel.name) as wheel:
        names = wheel.namelist()
    assert "app/__main__.py" in names and "configs/predict_llama3_8b.yaml" in names


@needs_makensis
@needs_7z
def test_the_offline_windows_installer_carries_the_wheels_and_the_runtime(app_wheel, tmp_path):
    bundle = tmp_path / "bundle 离线"
    (bundle / "wheels").mkdir(parents=True)
    pip_wheel = build_windows.bundled_pip_wheel()
    shutil.copy2(pip_wheel, bundle / "wheels")
    shutil.copy2(app_wheel, bundle / "wheels")
    runtime = bundle / "python-3.11.9-embed-amd64.zip"
    with zipfile.ZipFile(runtime, "w") as z:  # a stand-in: the real one comes from python.org
        z.writestr("python.exe", b"MZ")
    exe = build_windows.build(tmp_path / "dist", bundle=bundle, app_wheel=app_wheel, stage=tmp_path / "stage")
    assert exe.name.endswith("-offline-setup.exe")
    files = seven_zip_listing(exe)
    assert {f"setup/wheels/{pip_wheel.name}", f"setup/wheels/{app_wheel.name}", f"setup/{runtime.name}",
            f"setup/{pip_wheel.name}", "setup/setup_llama_desk.py"} <= files


def test_the_powershell_helper_is_plain_ascii():
    """Windows PowerShell 5.1 reads a script without a byte-order mark in the ANSI code page."""
    (ROOT / "installer" / "get_python.ps1").read_bytes().decode("ascii")


def test_every_shell_script_has_a_cmd_twin():
    for script in (ROOT / "installer").glob("*.sh"):
        twin = script.with_suffix(".cmd")
        assert twin.is_file(), f"{script.name} has no {twin.name}"
        assert b"\r\n" in twin.read_bytes()
