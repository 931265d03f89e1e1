"""The JIT build: it must succeed on this machine, honour the switches, and report its features."""
import fcntl
import os
import shutil
import subprocess
import sys
import time

import pytest

from paddle_qwenvl.ops import _build


@pytest.mark.skipif(_build.disabled() or shutil.which("g++") is None, reason="ops disabled or no compiler")
def test_ops_build_and_load_here():
    assert _build.compiled_ops() is not None, "external_ops failed to build: see the warning in the log"
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


@pytest.mark.skipif(_build.disabled() or shutil.which("g++") is None, reason="ops disabled or no compiler")
def test_cached_load_prints_nothing():
    assert _build.compiled_ops() is not None            # built (or loaded) here first
    code = "from paddle_qwenvl.ops._build import compiled_ops; assert compiled_ops() is not None"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (done.stdout, done.stderr) == ("", "")


@pytest.mark.skipif(_build.disabled() or shutil.which("g++") is None, reason="ops disabled or no compiler")
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
def test_failed_build_reports_the_compiler_error(tmp_path, monkeypatch, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.cc").write_text("int broken( {\n")
    monkeypatch.setattr(_build, "SRC_DIR", src)
    monkeypatch.setenv("PADDLE_QWENVL_OPS_CACHE", str(tmp_path / "cache"))
    with caplog.at_level("WARNING"):
        assert _build.compiled_ops.__wrapped__() is None          # uncached: a fresh attempt
    assert "broken.cc" in caplog.text and "error" in caplog.text


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
