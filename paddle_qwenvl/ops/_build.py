"""Compiles external_ops/ on first use into a per-user cache and loads it.

    PADDLE_QWENVL_OPS_CACHE=<dir>    cache root (default ~/.cache/paddle_qwenvl/ops)
    PADDLE_QWENVL_DISABLE_OPS=1      never build or load: every wrapper uses its Paddle reference
    PADDLE_QWENVL_KERNELS=portable   run the portable C++ loops even on an AVX512 CPU (the path an
                                     older CPU takes; read by the library at its first op call)
    PADDLE_QWENVL_WORK_PER_THREAD=n  work units (bytes, or multiply-adds for GEMMs) per extra thread
                                     before an op goes parallel (default 1 MiB; 0: always all threads)
    PADDLE_QWENVL_INT8_PREFILL=tiles int8 weight-only prefill in bf16 through dequantized tiles even
                                     where oneDNN converts int8 weights inside its GEMM (the default)

The cache subdirectory is a hash of the sources and flags, so an edit rebuilds once; after a build,
the builds of other sources that nothing loaded for STALE_DAYS are removed. Paddle's own
build chatter (ccache warning, setuptools INFO lines, "Compiling user custom op") is swallowed: a
first build prints one line, a cached load nothing. A build that fails (no compiler, no headers)
logs one warning with the compiler's last lines, and `compiled_ops()` returns None.
oneDNN is optional: with `pip install --no-deps onednn-devel==2025.0.0` (headers only) the GEMMs
link Paddle's own libdnnl.so.3; without it the dense GEMM falls back to paddle.matmul.
"""
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

# Installed: paddle_qwenvl/external_ops (setup.py maps it); from a checkout: <repo>/external_ops.
_HERE = Path(__file__).resolve()
SRC_DIR = next((d for d in (_HERE.parents[1] / "external_ops", _HERE.parents[2] / "external_ops")
                if d.is_dir()), _HERE.parents[2] / "external_ops")
CFLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno"]
NAME = "paddle_qwenvl_ops"
STALE_DAYS = 14     # a build of other sources not loaded for this long is removed after a new build
KERNEL_CHOICES = ("", "auto", "portable")


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


def _flags():
    libs = _paddle_libs()
    # Paddle's libiomp5, not libgomp: one OpenMP runtime for Paddle, oneDNN and our kernels.
    ldflags = [f"-L{libs}", "-l:libiomp5.so", f"-Wl,-rpath,{libs}"]
    cflags = list(CFLAGS)
    inc = _onednn_include()
    if inc and (Path(libs) / "libdnnl.so.3").exists():
        cflags += ["-DPQV_WITH_DNNL", f"-I{inc}"]
        ldflags += ["-l:libdnnl.so.3"]
    return cflags, ldflags


def _cache_dir(sources, cflags, ldflags) -> Path:
    h = hashlib.sha256()
    for path in sources:
        h.update(Path(path).read_bytes())
    h.update(" ".join(cflags + ldflags).encode())
    root = os.environ.get("PADDLE_QWENVL_OPS_CACHE") or Path.home() / ".cache" / "paddle_qwenvl" / "ops"
    return Path(root) / h.hexdigest()[:16]


def _sources():
    return sorted(str(p) for p in SRC_DIR.glob("*.cc"))


def _build():
    sources = _sources()
    if not sources:
        raise FileNotFoundError(f"no C++ sources in {SRC_DIR}")
    cflags, ldflags = _flags()
    # headers are hashed too: setuptools does not track them, so an edited header needs a new dir
    build_dir = _cache_dir(sources + sorted(str(p) for p in SRC_DIR.glob("*.h")), cflags, ldflags)
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
                raise RuntimeError(f"{exc}\n{_build_errors(output)}") from exc
        prune_stale_builds(build_dir)
        return module


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


def disabled() -> bool:
    return os.environ.get("PADDLE_QWENVL_DISABLE_OPS", "0") not in ("", "0")


def _check_kernel_choice() -> None:
    value = os.environ.get("PADDLE_QWENVL_KERNELS", "")
    if value not in KERNEL_CHOICES:
        raise ValueError(f"PADDLE_QWENVL_KERNELS={value!r}: expected 'portable' (force the non-AVX512 "
                         "kernels) or unset / 'auto' (pick by CPU)")
    value = os.environ.get("PADDLE_QWENVL_INT8_PREFILL", "")
    if value not in ("", "tiles"):
        raise ValueError(f"PADDLE_QWENVL_INT8_PREFILL={value!r}: expected 'tiles' (dequantized tiles for "
                         "the int8 prefill GEMM) or unset (oneDNN converts the int8 weights where it can)")


@functools.lru_cache(maxsize=None)
def build_info() -> dict:
    """What the loaded library can do: {'avx512': bool, 'onednn': bool, 'bf16': bool, 'amx': bool};
    all False without it. 'bf16': the CPU computes in bf16 natively, so weight-only prefill may use
    it. 'amx': AMX tiles are available, so the vision towers' bf16 attention runs fused on them."""
    ops = compiled_ops()
    if ops is None:
        return {"avx512": False, "onednn": False, "bf16": False, "amx": False}
    import paddle
    avx512, onednn, bf16, amx = ops.pqv_build_info(paddle.zeros([1])).numpy().tolist()
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
    """The compiled op module, or None (disabled, not x86-64, or the build failed)."""
    if disabled():
        return None
    _check_kernel_choice()
    try:
        return _build()
    except Exception as exc:  # any build/load failure means: use the references
        log.warning("paddle_qwenvl: compiled CPU ops unavailable; using pure-Paddle references. "
                    "Set PADDLE_QWENVL_DISABLE_OPS=1 to silence this. The build said:\n%s",
                    str(exc)[-3000:])
        return None
