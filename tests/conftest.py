import os

import pytest

os.environ.setdefault("PADDLE_QWENVL_QUIET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (real-size configs, benchmarks)")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """One tiny random checkpoint per family, shared by the whole session."""
    from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
    root = tmp_path_factory.mktemp("tiny")
    return {family: make_tiny_checkpoint(root / family, family, seed=0)
            for family in ("qwen2_vl", "qwen2_5_vl")}
