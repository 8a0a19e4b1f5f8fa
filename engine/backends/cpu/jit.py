"""numba, set up once: its compile cache in the user-data folder, the thread count, and bit-level casts.

An installed program's folder may be read-only, so compiled kernels are cached
under ``<user data>/jit-cache`` (set before numba is imported; the first start
compiles for tens of seconds, later ones load in about a second). numba has
no float16/bfloat16 scalar types, so the casts are tiny LLVM intrinsics:
``widen`` turns stored bits into float32 (fp16 through LLVM's ``fpext half``,
which becomes F16C's ``vcvtph2ps`` on x86; bf16 by a 16-bit shift; float32
unchanged) and ``to_half_bits`` rounds float32 to fp16 bits for the KV cache.
The element type of the array says the format: uint16 = fp16, int16 = bf16.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.paths import jit_cache_dir

def _kernel_sources_digest() -> str:
    """Changes whenever any kernel source (or numba) changes.

    numba's own cache checks only the file a function is defined in, not the
    files it calls into, so a kernel whose helper changed would load stale
    code; a folder per digest makes every change a clean start.
    """
    import hashlib
    from importlib.metadata import version

    digest = hashlib.sha256(version("numba").encode())
    for forced in ("LLAMA_DESK_CPU_KERNELS", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):  # a kernel variant or target
        digest.update(f"{forced}={os.environ.get(forced, '')};".encode())           # CPU chosen (llvm_ir)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# numba re-reads NUMBA_CACHE_DIR from the environment more than once (and otherwise writes next to
# the source files, which an installed program may not even be allowed to), so it stays set for the
# whole process. A child process inherits it; _OURS tells a child it was our choice, not the user's,
# so the child picks its own folder (its LLAMA_DESK_HOME may differ).
# A user's own NUMBA_CACHE_DIR gets a folder of ours inside it: stale caches are cleaned up only there.
_OURS, _USERS = "LLAMA_DESK_NUMBA_CACHE_DIR", "LLAMA_DESK_USER_NUMBA_CACHE_DIR"
_OWN_FOLDER = "llama-desk-kernels"
_MARKER = "llama-desk-kernels.txt"   # in every cache folder we made; with a hex name, the proof it is ours
_inherited = os.environ.get("NUMBA_CACHE_DIR")
if _inherited and _inherited != os.environ.get(_OURS):
    os.environ[_USERS] = os.environ.get(_USERS) or _inherited   # the user's own choice of base folder
_base = Path(os.environ[_USERS]) / _OWN_FOLDER if os.environ.get(_USERS) else jit_cache_dir()
# A child compiling for its parent (``precompile``) fills the parent's folder, whatever its own home says.
PARENTS_CACHE = "LLAMA_DESK_PARENTS_KERNEL_CACHE"
CACHE_DIR = Path(os.environ.pop(PARENTS_CACHE, "") or _base / _kernel_sources_digest())
os.environ["NUMBA_CACHE_DIR"] = os.environ[_OURS] = str(CACHE_DIR)
try:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / _MARKER).write_text("Compiled CPU kernels of llama-desk: deleted when a newer version replaces "
                                     "them.\n", encoding="utf-8")
except OSError:
    pass  # a read-only cache folder: numba then compiles every time, and nothing here is ever deleted

# OpenMP worker threads spin between parallel regions before sleeping. libgomp's default spin
# (300,000 rounds) steals the core from the thread that must launch the next region whenever
# anything else runs on the machine: measured with one busy core, decode fell from 10 to 2 tokens/s.
# A short spin keeps the quick hand-over between a layer's regions and sleeps soon after.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import numba  # noqa: E402  (after the cache folder is chosen)
from llvmlite import ir  # noqa: E402
from numba import types  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

numba.config.CACHE_DIR = str(CACHE_DIR)
# What the kernels are compiled with: fastmath lets LLVM reorder sums (vectorized reductions).
KERNEL = dict(nogil=True, fastmath=True, cache=True, error_model="numpy", boundscheck=False)
PARALLEL = dict(KERNEL, parallel=True)


def by_element_type(stub, arg: int, cases: dict, default):
    """Compile each call to ``stub`` (a Python placeholder) as a call to the kernel for the element type of its
    argument number ``arg``: ``cases[type]``, else ``default``. Every kernel takes the stub's arguments.

    numba chooses while it types the call, so a format costs nothing at run time: the weights' element type
    (uint16 fp16, int16 bf16, float32, int8 blocks) or the KV cache's picks the loop that reads it.
    """
    @overload(stub, jit_options=KERNEL)
    def _choose(*args):
        kernel = cases.get(args[arg].dtype, default)
        return lambda *args: kernel(*args)
    return stub


@intrinsic
def widen(typingctx, bits):
    """float32 value of one stored weight: uint16 = fp16 bits, int16 = bf16 bits, float32 as is."""
    if bits == types.uint16:
        def codegen(context, builder, signature, args):
            return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    elif bits == types.int16:
        def codegen(context, builder, signature, args):
            wide = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(wide, ir.FloatType())
    elif bits == types.float32:
        def codegen(context, builder, signature, args):
            return args[0]
    else:
        return None
    return types.float32(bits), codegen


@intrinsic
def to_half_bits(typingctx, value):
    """fp16 bits (round to nearest even) of a float32."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(value), codegen


def physical_cores() -> int:
    try:
        import psutil
        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def use_threads(threads: int | None) -> int:
    """Set numba's thread count (default: one per physical core; never more than numba started)."""
    n = min(threads or physical_cores(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


def compiled_marker(variant: str) -> Path:
    """A file that exists once the kernels for ``variant`` (formats, cache type) were compiled and cached."""
    return CACHE_DIR / f"compiled-{variant}.ok"


def remove_stale_caches() -> None:
    """Delete kernel caches of earlier versions (each is tens of MB): only folders provably ours."""
    import shutil
    for folder in CACHE_DIR.parent.iterdir() if CACHE_DIR.parent.is_dir() else ():
        if folder != CACHE_DIR and _made_by_us(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _made_by_us(folder: Path) -> bool:
    """A digest-named folder with our marker in it (or the compiled-*.ok files earlier versions left)."""
    if folder.is_symlink() or not folder.is_dir() or len(folder.name) != 16:
        return False
    if any(c not in "0123456789abcdef" for c in folder.name):
        return False
    return (folder / _MARKER).is_file() or any(folder.glob("compiled-*.ok"))
