"""Compiles external_ops/ on first use into a per-user cache and loads it.

The switches (paddle_qwenvl/settings.py): PADDLE_QWENVL_OPS_CACHE (cache root, default
~/.cache/paddle_qwenvl/ops), PADDLE_QWENVL_DISABLE_OPS=1 (never build or load: every wrapper runs
its pure-Paddle reference). The ones the kernels act on are not read by the C++: every op takes
them as attributes, `exec_attrs()` below (threads, work per thread, kernel choice), plus its own
(the wrappers' dispatchers decide which path runs).

The cache subdirectory is a hash of the sources (external_ops/**/*.cc, **/*.h) and flags, so an
edit rebuilds once; after a build, the builds of other sources that nothing loaded for STALE_DAYS
are removed. Paddle's own build chatter (ccache warning, setuptools INFO lines, "Compiling user
custom op") is swallowed: a first build prints one line, a cached load nothing.
A build that fails (no compiler, no headers) raises BuildError with the compiler's error lines and
the ways out, at every call of compiled_ops() (the failure is kept for the process, not retried);
PADDLE_QWENVL_DISABLE_OPS=1 runs the references on purpose. On a CPU other than x86-64 (the
kernels are x86 code) nothing is built: one warning, and the references run.
oneDNN: the GEMMs compile against the vendored oneDNN headers (external_ops/third_party/onednn),
else onednn-devel's, and link Paddle's own libdnnl.so.3; the headers' version must be the
library's (check_onednn_headers). Without headers the dense GEMM falls back to paddle.matmul.
"""
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

from .. import settings
from .threads import num_threads

log = logging.getLogger(__name__)

# Installed: paddle_qwenvl/external_ops (setup.py maps it); from a checkout: <repo>/external_ops.
_HERE = Path(__file__).resolve()
SRC_DIR = next((d for d in (_HERE.parents[1] / "external_ops", _HERE.parents[2] / "external_ops")
                if d.is_dir()), _HERE.parents[2] / "external_ops")
CFLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno"]
NAME = "paddle_qwenvl_ops"
STALE_DAYS = 14     # a build of other sources not loaded for this long is removed after a new build
X86_64 = ("x86_64", "amd64")
ONEDNN_VERSION_H = Path("oneapi") / "dnnl" / "dnnl_version.h"


class BuildError(RuntimeError):
    """The compiled ops could not be built or loaded."""


def _paddle_libs() -> str:
    import paddle
    return str(Path(paddle.__file__).parent / "libs")


def _onednn_include():
    """Directory holding oneapi/dnnl/dnnl.hpp: our vendored 3.6 headers, else onednn-devel's, or None."""
    vendored = SRC_DIR / "third_party" / "onednn" / "include"
    if (vendored / "oneapi" / "dnnl" / "dnnl.hpp").exists():
        return str(vendored)
    for root in (sysconfig.get_paths()["data"], os.environ.get("CONDA_PREFIX", "")):
        inc = Path(root) / "include"
        if root and (inc / "oneapi" / "dnnl" / "dnnl.hpp").exists():
            return str(inc)
    return None


class _DnnlVersion(ctypes.Structure):          # dnnl_version_t (oneapi/dnnl/dnnl_types.h)
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


def header_onednn_version(header_dir) -> tuple:
    """(major, minor, patch) that <header_dir>/oneapi/dnnl/dnnl_version.h declares."""
    path = Path(header_dir) / ONEDNN_VERSION_H
    text = path.read_text()
    found = [re.search(rf"#define\s+DNNL_VERSION_{part}\s+(\d+)", text) for part in ("MAJOR", "MINOR", "PATCH")]
    if not all(found):
        raise BuildError(f"{path} does not define DNNL_VERSION_MAJOR / MINOR / PATCH")
    return tuple(int(m.group(1)) for m in found)


def library_onednn_version(lib_path) -> tuple:
    """(major, minor, patch) that the library's dnnl_version() reports."""
    dnnl_version = ctypes.CDLL(str(lib_path)).dnnl_version
    dnnl_version.restype = ctypes.POINTER(_DnnlVersion)
    v = dnnl_version().contents
    return v.major, v.minor, v.patch


def check_onednn_headers(header_dir, lib_path) -> tuple:
    """The oneDNN version of the headers we compile against and of the library we link, checked to
    agree in major and minor version (oneDNN keeps its API within a minor series; a patch release
    differs in fixes only: the vendored 3.6.0 headers serve Paddle's 3.6.2). Returns the library's
    (major, minor, patch); a mismatch is a BuildError saying which headers to use."""
    headers, library = header_onednn_version(header_dir), library_onednn_version(lib_path)
    if headers[:2] != library[:2]:
        raise BuildError(
            f"oneDNN headers {'.'.join(map(str, headers))} ({Path(header_dir) / ONEDNN_VERSION_H}) do not match "
            f"the oneDNN {'.'.join(map(str, library))} that Paddle ships ({lib_path}): the ops would be built "
            f"against another oneDNN API. Use headers of oneDNN {library[0]}.{library[1]} (the onednn-devel "
            f"release carrying it), or set PADDLE_QWENVL_DISABLE_OPS=1 to run the pure-Paddle references.")
    return library


def _flags():
    libs = _paddle_libs()
    # Paddle's libiomp5, not libgomp: one OpenMP runtime for Paddle, oneDNN and our kernels.
    ldflags = [f"-L{libs}", "-l:libiomp5.so", f"-Wl,-rpath,{libs}"]
    cflags = list(CFLAGS)
    inc, lib = _onednn_include(), Path(libs) / "libdnnl.so.3"
    if inc and lib.exists():
        check_onednn_headers(inc, lib)
        cflags += ["-DPQV_WITH_DNNL", f"-I{inc}"]
        ldflags += ["-l:libdnnl.so.3"]
    return cflags, ldflags


def _cache_dir(sources, cflags, ldflags) -> Path:
    h = hashlib.sha256()
    for path in sources:
        h.update(Path(path).read_bytes())
    h.update(" ".join(cflags + ldflags).encode())
    return settings.ops_cache_dir() / h.hexdigest()[:16]


def ops_version() -> str:
    """The hash naming the build of the current sources and flags (what an exported program's
    compiled ops must match)."""
    cflags, ldflags = _flags()
    return _cache_dir(_sources() + _headers(), cflags, ldflags).name


def _sources():
    """Every .cc under external_ops/, in all its op folders."""
    return sorted(str(p) for p in SRC_DIR.rglob("*.cc"))


def _headers():
    return sorted(str(p) for p in SRC_DIR.rglob("*.h"))


_failures = {}      # build directory -> the BuildError its build raised (kept: not retried)


def _build():
    sources = _sources()
    if not sources:
        raise BuildError(f"no C++ sources in {SRC_DIR}: the package is incomplete (reinstall paddle-qwenvl), "
                         "or set PADDLE_QWENVL_DISABLE_OPS=1 to run the pure-Paddle references")
    cflags, ldflags = _flags()
    # headers are hashed too: setuptools does not track them, so an edited header needs a new dir
    build_dir = _cache_dir(sources + _headers(), cflags, ldflags)
    if build_dir in _failures:
        raise BuildError(str(_failures[build_dir]))
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:      # one builder at a time per cache entry
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = (build_dir / NAME / f"{NAME}.so").exists()
        if not built:
            print("paddle-qwenvl: building CPU kernels, ~1 min, once", file=sys.stderr, flush=True)
        with _paddle_output_swallowed() as output:
            if built:       # the directory is named by a hash of sources and flags: up to date
                try:        # load() would rerun setup.py in a subprocess first: ~1.2 s per process
                    from paddle.utils.cpp_extension.extension_utils import _import_module_from_library
                    return _import_module_from_library(NAME, str(build_dir / NAME), False)
                except Exception:                    # private API moved, or a broken .so: full path
                    pass
            try:
                from paddle.utils.cpp_extension import load   # its import warns about ccache
                module = load(NAME, sources, extra_cxx_cflags=cflags, extra_ldflags=ldflags,
                              extra_include_paths=[str(SRC_DIR)], build_directory=str(build_dir))
            except Exception as exc:
                _failures[build_dir] = _build_failed(exc, output)
                raise _failures[build_dir] from exc
        prune_stale_builds(build_dir)
        return module


def _build_failed(exc, output) -> BuildError:
    return BuildError(
        f"paddle-qwenvl could not build its CPU kernels ({SRC_DIR}). The build said:\n"
        f"{_build_errors(output)}\n{str(exc)[-1000:]}\n"
        "To fix it: install a C++ compiler (g++ 9 or newer, e.g. `apt-get install g++`) and check that "
        "Paddle's C++ headers (paddle/include) and the Python headers are there; or set "
        "PADDLE_QWENVL_DISABLE_OPS=1 to run the pure-Paddle reference ops on purpose (about 10x slower).")


def prune_stale_builds(keep: Path, max_age_days: float = STALE_DAYS) -> list:
    """Removes the other builds beside `keep` (directories named by a 16-hex-digit hash, nothing
    else in the cache root is touched) that no process has loaded for max_age_days: every load
    rewrites a build's `.lock`, so its mtime is the last use. A build whose lock another process
    holds is skipped. Returns the removed directories. Each edit of the sources leaves one ~17 MB
    build behind; an upgraded install would otherwise keep every old one."""
    cutoff = time.time() - max_age_days * 86400
    removed = []
    for d in keep.parent.iterdir():
        if d == keep or not d.is_dir() or not re.fullmatch(r"[0-9a-f]{16}", d.name):
            continue
        lock = d / ".lock"
        try:
            if (lock if lock.exists() else d).stat().st_mtime > cutoff:
                continue
            with open(lock, "a") as f:                 # "a": taking the lock leaves the mtime alone
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(d)
            removed.append(d)
        except OSError:                                # in use, or not ours to remove
            continue
    return removed


@contextlib.contextmanager
def _paddle_output_swallowed():
    """Paddle's load() warns about ccache, logs INFO lines (in-process and from its setup.py
    subprocess) and prints "Compiling user custom op" on stdout. Send fds 1 and 2 to a temp file
    for the call (the subprocess writes to them directly); yields that file so a failed build can
    show the compiler's last lines."""
    with tempfile.TemporaryFile(mode="w+b") as output, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext_log = logging.getLogger("utils.cpp_extension")
        level = ext_log.level
        ext_log.setLevel(logging.WARNING)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(output.fileno(), 1)
            os.dup2(output.fileno(), 2)
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            ext_log.setLevel(level)


def _build_errors(output, n=20) -> str:
    """The compiler's `error:` lines (the first n; later ones are mostly the linker missing the
    objects that failed), else the last n lines of the build output."""
    output.seek(0)
    lines = output.read().decode(errors="replace").splitlines()
    errors = [line for line in lines if "error:" in line]
    return "\n".join(errors[:n] or lines[-n:])


@functools.lru_cache(maxsize=None)
def _process_choices() -> tuple:
    """(work_per_thread, portable, int8_prefill_tiles, quant_prefill): PADDLE_QWENVL_WORK_PER_THREAD,
    _KERNELS, _INT8_PREFILL and _QUANT_PREFILL, read once per process, at the first op call that asks."""
    return (settings.work_per_thread(), settings.kernels() == "portable", settings.int8_prefill() == "tiles",
            settings.quant_prefill())


def exec_attrs(threads: int = None) -> tuple:
    """The attributes every compiled op ends with (external_ops/common.h, pqv::Exec):
    (num_threads, work_per_thread, portable): threads for the call (`threads`, else ops/threads.py),
    the work units each thread must get before another one is woken, and whether the portable C++
    loops run even on an AVX512 CPU. (An exported program holds them as attributes; static/model.py
    sets its num_threads to the running process's.)"""
    work, portable = _process_choices()[:2]
    return threads or num_threads(), work, portable


def int8_prefill_tiles() -> bool:
    """Whether the int8 weight-only bf16 prefill writes dequantized tiles even where oneDNN could
    convert the int8 weights inside its GEMM (PADDLE_QWENVL_INT8_PREFILL=tiles)."""
    return _process_choices()[2]


def quant_prefill() -> str:
    """How weight-only layers compute prompts: 'vnni' (activations quantized to int8) or 'bf16'
    (oneDNN's bf16 GEMM from ops.weight_only_linear.VNNI_GEMM_ROWS rows), as
    PADDLE_QWENVL_QUANT_PREFILL says; 'auto' is 'bf16' where the CPU has AMX, else 'vnni'."""
    choice = _process_choices()[3]
    if choice == "auto":
        return "bf16" if build_info()["amx"] else "vnni"
    return choice


def build_info() -> dict:
    """What the loaded library can do on this CPU under the kernel choice:
    {'avx512': bool, 'onednn': bool, 'bf16': bool, 'amx': bool}; all False without it. 'bf16': the
    CPU computes in bf16 natively, so weight-only prefill may use it. 'amx': AMX tiles are
    available, so the vision towers' bf16 attention may run fused on them."""
    if compiled_ops() is None:
        return {"avx512": False, "onednn": False, "bf16": False, "amx": False}
    return _build_info(_process_choices()[1])


@functools.lru_cache(maxsize=None)
def _build_info(portable: bool) -> dict:
    import paddle
    avx512, onednn, bf16, amx = compiled_ops().pqv_build_info(paddle.zeros([1]), portable).numpy().tolist()
    return {"avx512": bool(avx512), "onednn": bool(onednn), "bf16": bool(bf16), "amx": bool(amx)}


def kernel_applies(x) -> bool:
    """Whether a wrapper should call the compiled op on x: the library is loaded and x is float32
    and not empty. Under paddle.jit.to_static shapes are symbolic, so the emptiness test and the
    wrappers' shape checks run in dygraph only. (`0 not in x.shape`, not `x.size > 0`: x.size costs
    ~7 us per call, and every op of a decode step asks.)"""
    import paddle
    if compiled_ops() is None or x.dtype != paddle.float32:
        return False
    return not paddle.in_dynamic_mode() or 0 not in x.shape


@functools.lru_cache(maxsize=None)
def compiled_ops():
    """The compiled op module; None when PADDLE_QWENVL_DISABLE_OPS=1 or the CPU is not x86-64.
    A failed build raises BuildError, and so does every later call (lru_cache keeps no exceptions;
    _build keeps the failure of each build directory, so the sources are not recompiled)."""
    if settings.disable_ops():
        return None
    if platform.machine().lower() not in X86_64:
        log.warning("paddle_qwenvl: the compiled CPU ops are x86-64 code and this CPU is %s: every op "
                    "runs its pure-Paddle reference. Set PADDLE_QWENVL_DISABLE_OPS=1 to silence this.",
                    platform.machine())
        return None
    settings.kernels()              # checked before a build: a bad value is an error now, not at the first op
    settings.int8_prefill()
    settings.quant_prefill()
    return _build()
