"""Compiles external_ops/ on first use into a per-user cache and loads it.

    PADDLE_QWENVL_OPS_CACHE=<dir>    cache root (default ~/.cache/paddle_qwenvl/ops)
    PADDLE_QWENVL_DISABLE_OPS=1      never build or load: every wrapper uses its Paddle reference

The cache subdirectory is a hash of the sources and flags, so an edit rebuilds once. A build
that fails (no compiler, no headers) logs one warning and `compiled_ops()` returns None.
oneDNN is optional: with `pip install --no-deps onednn-devel==2025.0.0` (headers only) the GEMMs
link Paddle's own libdnnl.so.3; without it the dense GEMM falls back to paddle.matmul.
"""
import fcntl
import functools
import hashlib
import logging
import os
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

# Installed: paddle_qwenvl/external_ops (setup.py maps it); from a checkout: <repo>/external_ops.
_HERE = Path(__file__).resolve()
SRC_DIR = next((d for d in (_HERE.parents[1] / "external_ops", _HERE.parents[2] / "external_ops")
                if d.is_dir()), _HERE.parents[2] / "external_ops")
CFLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno"]


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
    from paddle.utils.cpp_extension import load
    sources = _sources()
    if not sources:
        raise FileNotFoundError(f"no C++ sources in {SRC_DIR}")
    cflags, ldflags = _flags()
    # headers are hashed too: setuptools does not track them, so an edited header needs a new dir
    build_dir = _cache_dir(sources + sorted(str(p) for p in SRC_DIR.glob("*.h")), cflags, ldflags)
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:      # one builder at a time per cache entry
        fcntl.flock(lock, fcntl.LOCK_EX)
        return load("paddle_qwenvl_ops", sources, extra_cxx_cflags=cflags, extra_ldflags=ldflags,
                    extra_include_paths=[str(SRC_DIR)], build_directory=str(build_dir))


def disabled() -> bool:
    return os.environ.get("PADDLE_QWENVL_DISABLE_OPS", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def build_info() -> dict:
    """What the loaded library can do: {'avx512': bool, 'onednn': bool}; all False without it."""
    ops = compiled_ops()
    if ops is None:
        return {"avx512": False, "onednn": False}
    import paddle
    avx512, onednn = ops.pqv_build_info(paddle.zeros([1])).numpy().tolist()
    return {"avx512": bool(avx512), "onednn": bool(onednn)}


@functools.lru_cache(maxsize=None)
def compiled_ops():
    """The compiled op module, or None (disabled, not x86-64, or the build failed)."""
    if disabled():
        return None
    try:
        return _build()
    except Exception as exc:  # any build/load failure means: use the references
        log.warning("paddle_qwenvl: compiled CPU ops unavailable (%s); using pure-Paddle references. "
                    "Set PADDLE_QWENVL_DISABLE_OPS=1 to silence this.", str(exc).splitlines()[-1][:300])
        return None
