"""Stand-ins for the few parts of Windows 10 that Wine 8.0 lacks, so the Windows build runs under it unchanged.

- ``bcryptprimitives.dll``: ``ProcessPrng``, which Rust's standard library imports (the tokenizers, tiktoken,
  safetensors and hf_xet wheels; safetensors makes ``import mindspore`` fail without it). Wine 8.0 has no such DLL;
  this one fills the buffer from ``BCryptGenRandom``, as Windows' does.
- ``icuuc.dll``: the ``ucnv_*`` functions ``Qt6Core.dll`` imports from Windows' own ICU. Opening a converter fails,
  so Qt uses its built-in codecs (as it does where ICU has no converter by the asked name).
- ``mscms.dll``: Wine's ``WcsCreateIccProfile`` aborts the process when Qt's ``qwindows.dll`` opens a window; this
  one (loaded for python.exe and pythonw.exe only) reports no colour profile, so Qt assumes sRGB.
- ``powershell.exe``: Wine's is a stub that does nothing, so the installer's ``get_python.ps1`` step never runs.
  The stand-in does what that script does with ``-Zip`` (unpack the runtime, write its ``._pth``) and refuses any
  other command; the script itself (download, signature check) is tested by hand on Windows.

The DLLs are assembled with Debian's ``binutils-mingw-w64-x86-64`` (no C compiler needed); the PowerShell stand-in is
pip's own script launcher (distlib's ``t64.exe``) with a Python script appended.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

_HEADER = "    .intel_syntax noprefix\n    .text\n    .globl DllMain\nDllMain:\n    mov eax, 1\n    ret\n"

# ProcessPrng(PBYTE data, SIZE_T size) -> BOOL; BCryptGenRandom(NULL, data, (ULONG) size, USE_SYSTEM_PREFERRED_RNG)
_BCRYPTPRIMITIVES = _HEADER + """\
    .globl ProcessPrng
ProcessPrng:
    sub rsp, 40
    mov r8, rdx
    mov rdx, rcx
    xor ecx, ecx
    mov r9d, 2
    call [rip + __imp_BCryptGenRandom]
    add rsp, 40
    test eax, eax
    sete al
    movzx eax, al
    ret
"""

_UCNV = ("ucnv_close UCNV_FROM_U_CALLBACK_SUBSTITUTE UCNV_TO_U_CALLBACK_SUBSTITUTE ucnv_reset ucnv_getMaxCharSize "
         "ucnv_getName ucnv_getToUCallBack ucnv_getFromUCallBack ucnv_setToUCallBack ucnv_setFromUCallBack "
         "ucnv_cbToUWriteUChars ucnv_toUnicode ucnv_cbFromUWriteUChars ucnv_toUCountPending ucnv_fromUCountPending "
         "ucnv_getStandardName ucnv_getAvailableName ucnv_countAvailable ucnv_fromUnicode").split()
# ucnv_open(const char *name, UErrorCode *error) -> NULL with U_FILE_ACCESS_ERROR (4); the rest are reached only
# with an open converter, or count none (0 / NULL).
_ICUUC = _HEADER + """\
    .globl ucnv_open
ucnv_open:
    test rdx, rdx
    jz 1f
    mov dword ptr [rdx], 4
1:  xor eax, eax
    ret
""" + "".join(f"    .globl {name}\n{name}:\n" for name in _UCNV) + "    xor eax, eax\n    ret\n"

# OpenColorProfileW, GetColorProfileFromHandle, WcsCreateIccProfile -> NULL / FALSE; CloseColorProfile -> TRUE
_MSCMS = _HEADER + """\
    .globl OpenColorProfileW, GetColorProfileFromHandle, WcsCreateIccProfile, CloseColorProfile
OpenColorProfileW:
GetColorProfileFromHandle:
WcsCreateIccProfile:
    xor eax, eax
    ret
CloseColorProfile:
    mov eax, 1
    ret
"""

DLLS = {  # name -> (assembly, exports, imports {dll: [functions]})
    "bcryptprimitives": (_BCRYPTPRIMITIVES, ["ProcessPrng"], {"bcrypt": ["BCryptGenRandom"]}),
    "icuuc": (_ICUUC, ["ucnv_open", *_UCNV], {}),
    "mscms": (_MSCMS, ["OpenColorProfileW", "CloseColorProfile", "GetColorProfileFromHandle",
                       "WcsCreateIccProfile"], {}),
}
TOOLS = ("x86_64-w64-mingw32-as", "x86_64-w64-mingw32-ld", "x86_64-w64-mingw32-dlltool")


def build_dll(name: str, folder: Path) -> Path:
    """Assemble and link one stand-in DLL into ``folder``."""
    source, exports, imports = DLLS[name]
    work = folder / f"{name}.build"
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.s").write_text(source, encoding="ascii")
    (work / f"{name}.def").write_text(f"LIBRARY {name}.dll\nEXPORTS\n" + "\n".join(exports) + "\n", encoding="ascii")
    libraries = []
    for dll, functions in imports.items():  # an import library made from a .def: no mingw-w64 runtime needed
        (work / f"{dll}.def").write_text(f"LIBRARY {dll}.dll\nEXPORTS\n" + "\n".join(functions) + "\n", encoding="ascii")
        subprocess.run([TOOLS[2], "-d", str(work / f"{dll}.def"), "-l", str(work / f"lib{dll}.a")], check=True)
        libraries.append(str(work / f"lib{dll}.a"))
    subprocess.run([TOOLS[0], "-o", str(work / f"{name}.o"), str(work / f"{name}.s")], check=True)
    out = folder / f"{name}.dll"
    # relocatable (three of them share python.exe's address space), no time stamp (the same bytes every build)
    subprocess.run([TOOLS[1], "--dll", "--no-insert-timestamp", "--dynamicbase", "--enable-reloc-section",
                    "--high-entropy-va", "--subsystem", "windows", "-e", "DllMain", "-o", str(out),
                    str(work / f"{name}.o"), str(work / f"{name}.def"), *libraries], check=True)
    return out


POWERSHELL_SCRIPT = r'''
"""Stand-in for powershell.exe under Wine: does what get_python.ps1 -Dest DIR -Zip ZIP does, refuses anything else."""
import shutil, sys, zipfile
from pathlib import Path

sys.stdout.reconfigure(encoding="utf-8", errors="replace")
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else ""
if not value("-File").lower().endswith("get_python.ps1") or not value("-Dest") or not value("-Zip"):
    print(f"powershell stand-in: only get_python.ps1 -Dest DIR -Zip ZIP runs under Wine, not {args}")
    sys.exit(9)
dest, archive = Path(value("-Dest")), Path(value("-Zip"))
if dest.exists():
    shutil.rmtree(dest)
with zipfile.ZipFile(archive) as runtime:
    runtime.extractall(dest)
pth, stdlib = next(dest.glob("python3*._pth"), None), next(dest.glob("python3*.zip"), None)
if not (dest / "python.exe").is_file() or pth is None or stdlib is None:
    print(f"{archive} is not Python's embeddable runtime")
    sys.exit(5)
pth.write_text("\r\n".join([stdlib.name, ".", "Lib\\site-packages", "import site"]) + "\r\n", encoding="ascii")
print(f"Python runtime ready in {dest}")
'''


def powershell_exe(pip_wheel: Path, python_exe_windows_path: str) -> bytes:
    """distlib's console launcher + ``#!"python.exe"`` + a zip holding the script as ``__main__.py``."""
    with zipfile.ZipFile(pip_wheel) as wheel:
        launcher = wheel.read("pip/_vendor/distlib/t64.exe")
    script = io.BytesIO()
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr(zipfile.ZipInfo("__main__.py", (2024, 1, 1, 0, 0, 0)), POWERSHELL_SCRIPT)  # same bytes
    return launcher + f'#!"{python_exe_windows_path}"\r\n'.encode("utf-8") + script.getvalue()
