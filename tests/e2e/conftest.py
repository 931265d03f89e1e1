"""Drive the CLI and the deploy scripts as a user would: subprocesses on tiny checkpoints."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_PIXELS = dict(max_pixels=64 * 28 * 28)        # keeps images at <= 64 patches


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
    root = tmp_path_factory.mktemp("e2e_models")
    return {family: make_tiny_checkpoint(root / family, family, seed=0, **SMALL_PIXELS)
            for family in ("qwen2_vl", "qwen2_5_vl")}


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _env(cache_root, compiled_ops: bool = False) -> dict:
    """Quiet, one thread, a private cache. The compiled kernels are off (each subprocess would
    otherwise re-check their build, seconds each); the demo test keeps them on, as a user has."""
    env = dict(os.environ, PADDLE_QWENVL_QUIET="1", PADDLE_QWENVL_NUM_THREADS="1",
               PADDLE_QWENVL_CACHE=str(cache_root))
    if not compiled_ops:
        env["PADDLE_QWENVL_DISABLE_OPS"] = "1"
    return env


@pytest.fixture
def cli(cache_root):
    """cli(*args, stdin=None) -> CompletedProcess of `paddle-qwenvl args` (as python -m)."""
    def run(*args, stdin=None, compiled_ops=False):
        return subprocess.run([sys.executable, "-m", "paddle_qwenvl.cli", *map(str, args)], input=stdin,
                              capture_output=True, text=True, env=_env(cache_root, compiled_ops), timeout=600)
    return run


@pytest.fixture
def deploy(cache_root):
    """deploy(family, *args) -> CompletedProcess of deploy/<family>/<family>_infer.py args."""
    def run(family, *args):
        script = ROOT / "deploy" / family / f"{family}_infer.py"
        return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                              text=True, env=_env(cache_root), timeout=300)
    return run


def assert_clean_error(result, *fragments):
    """Non-zero exit, an `error:` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
