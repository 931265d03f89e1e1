"""The JIT build: it must succeed on this machine, honour the switches, and report its features."""
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paddle
import pytest

from paddle_qwenvl import settings
from paddle_qwenvl.ops import _build

ops_enabled = pytest.mark.skipif(settings.disable_ops() or shutil.which("g++") is None,
                                 reason="ops disabled or no compiler")


@ops_enabled
def test_ops_build_and_load_here():
    assert _build.compiled_ops() is not None
    info = _build.build_info()
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    has_vnni = "avx512_vnni" in cpuinfo
    assert info["avx512"] == has_vnni
    assert info["bf16"] == (has_vnni and "avx512_bf16" in cpuinfo)


def test_disable_switch_falls_back_to_references():
    code = ("from paddle_qwenvl.ops._build import compiled_ops, build_info;"
            "assert compiled_ops() is None; assert build_info() == {'avx512': False, 'onednn': False, 'bf16': False, 'amx': False}")
    env = dict(os.environ, PADDLE_QWENVL_DISABLE_OPS="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_cache_dir_follows_env_and_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_OPS_CACHE", str(tmp_path))
    src = tmp_path / "a.cc"
    src.write_text("int a;")
    first = _build._cache_dir([src], ["-O3"], [])
    src.write_text("int b;")
    assert first.parent == tmp_path
    assert _build._cache_dir([src], ["-O3"], []) != first


@ops_enabled
def test_cached_load_prints_nothing():
    assert _build.compiled_ops() is not None            # built (or loaded) here first
    code = "from paddle_qwenvl.ops._build import compiled_ops; assert compiled_ops() is not None"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (done.stdout, done.stderr) == ("", "")


@ops_enabled
def test_cached_load_skips_the_setup_subprocess():
    """A built cache entry is imported directly: paddle's load() (which reruns setup.py in a
    subprocess, ~1.2 s per process) is not called."""
    assert _build.compiled_ops() is not None
    code = ("import paddle.utils.cpp_extension as ce\n"
            "def refuse(*a, **k): raise RuntimeError('load() called')\n"
            "ce.load = refuse\n"
            "from paddle_qwenvl.ops._build import compiled_ops; assert compiled_ops() is not None")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "load() called" not in done.stderr


@pytest.mark.skipif(shutil.which("g++") is None, reason="no compiler")
def test_failed_build_raises_the_compiler_error_and_the_fix(tmp_path, monkeypatch):
    """A build that fails is an error naming the compiler's complaint and the ways out, every time
    it is asked (kept, not retried, and never a silent fall-back to the slow references)."""
    src = tmp_path / "src" / "op"                                 # sources in an op folder
    src.mkdir(parents=True)
    (src / "broken.cc").write_text("int broken( {\n")
    monkeypatch.setattr(_build, "SRC_DIR", src.parent)
    monkeypatch.setenv("PADDLE_QWENVL_OPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PADDLE_QWENVL_DISABLE_OPS", raising=False)
    for _ in range(2):                                            # uncached: each call asks again
        with pytest.raises(_build.BuildError) as failed:
            _build.compiled_ops.__wrapped__()
        message = str(failed.value)
        assert "broken.cc" in message and "error" in message
        assert "g++" in message and "PADDLE_QWENVL_DISABLE_OPS=1" in message
    assert isinstance(failed.value, RuntimeError)


def test_sources_and_headers_are_found_in_op_folders():
    """The build compiles every .cc and hashes every .h below external_ops/, folders included."""
    sources, headers = _build._sources(), _build._headers()
    assert any("/attention/" in s for s in sources) and all(s.endswith(".cc") for s in sources)
    assert any(h.endswith("common.h") for h in headers) and any("/gemv/" in h for h in headers)
    assert set(sources) == {str(p) for p in _build.SRC_DIR.rglob("*.cc")}


def test_other_cpus_run_the_references(monkeypatch, caplog):
    """The kernels are x86-64 code: on another CPU nothing is built, one warning says so."""
    monkeypatch.delenv("PADDLE_QWENVL_DISABLE_OPS", raising=False)
    monkeypatch.setattr(_build.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(_build, "_build", lambda: pytest.fail("no build on aarch64"))
    with caplog.at_level("WARNING"):
        assert _build.compiled_ops.__wrapped__() is None
    assert "aarch64" in caplog.text and "PADDLE_QWENVL_DISABLE_OPS=1" in caplog.text


def write_onednn_version(include_dir, version):
    header = include_dir / _build.ONEDNN_VERSION_H
    header.parent.mkdir(parents=True)
    major, minor, patch = version
    header.write_text(f"#define DNNL_VERSION_MAJOR {major}\n#define DNNL_VERSION_MINOR {minor}\n"
                      f"#define DNNL_VERSION_PATCH {patch}\n")
    return include_dir


def paddle_onednn():
    lib = Path(paddle.__file__).parent / "libs" / "libdnnl.so.3"
    if not lib.exists():
        pytest.skip("this Paddle ships no libdnnl.so.3")
    return lib


def test_onednn_headers_of_another_version_are_an_error(tmp_path):
    lib = paddle_onednn()
    major, minor, patch = _build.library_onednn_version(lib)
    headers = write_onednn_version(tmp_path / "include", (major, minor + 1, 0))
    with pytest.raises(_build.BuildError, match=rf"oneDNN headers {major}\.{minor + 1}\.0 .* do not match the "
                                                rf"oneDNN {major}\.{minor}\.{patch}"):
        _build.check_onednn_headers(headers, lib)


def test_onednn_headers_of_the_library_version_pass(tmp_path):
    """The vendored headers are the library's minor version (a patch release apart is fine)."""
    lib = paddle_onednn()
    version = _build.library_onednn_version(lib)
    assert _build.check_onednn_headers(write_onednn_version(tmp_path / "a", version[:2] + (0,)), lib) == version
    vendored = _build.SRC_DIR / "third_party" / "onednn" / "include"
    assert _build.check_onednn_headers(vendored, lib) == version


def test_unknown_kernel_choice_is_an_error(monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_KERNELS", "avx2")
    monkeypatch.delenv("PADDLE_QWENVL_DISABLE_OPS", raising=False)
    with pytest.raises(ValueError, match="PADDLE_QWENVL_KERNELS='avx2'"):
        _build.compiled_ops.__wrapped__()


def test_unknown_int8_prefill_choice_is_an_error(monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_INT8_PREFILL", "dnnl")
    monkeypatch.delenv("PADDLE_QWENVL_DISABLE_OPS", raising=False)
    with pytest.raises(ValueError, match="PADDLE_QWENVL_INT8_PREFILL='dnnl'"):
        _build.compiled_ops.__wrapped__()


def test_stale_builds_of_other_sources_are_pruned(tmp_path):
    old = time.time() - (_build.STALE_DAYS + 1) * 86400

    def build(name, loaded_at=None):
        d = tmp_path / name
        (d / _build.NAME).mkdir(parents=True)
        (d / ".lock").touch()
        if loaded_at:
            os.utime(d / ".lock", (loaded_at, loaded_at))
        return d

    keep, fresh, stale = build("0123456789abcdef", old), build("1111111111111111"), build("2222222222222222", old)
    other = tmp_path / "not-a-build"                   # a shared cache root: not ours to remove
    other.mkdir()
    os.utime(other, (old, old))
    with open(build("3333333333333333", old) / ".lock", "a") as held:   # another process is loading it
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = _build.prune_stale_builds(keep)
    assert removed == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0123456789abcdef", "1111111111111111",
                                                          "3333333333333333", "not-a-build"]
    assert keep.exists() and fresh.exists()
