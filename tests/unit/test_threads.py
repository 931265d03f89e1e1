"""The thread knob: --threads (set_up_runtime) binds our ops as well as Paddle's kernels."""
import paddle
import pytest

from paddle_qwenvl.cli.common import UserError, set_up_runtime
from paddle_qwenvl.ops import threads


@pytest.fixture
def fresh_threads(monkeypatch):
    """Our knob reset after the test; Paddle's own thread setting recorded instead of changed (it
    has no getter to restore it with)."""
    monkeypatch.setattr(threads, "_chosen", [])
    monkeypatch.setenv(threads.ENV, "3")
    paddle_calls = []
    monkeypatch.setattr(paddle.base.core, "set_num_threads", paddle_calls.append)
    return paddle_calls


def test_cli_threads_override_the_environment_for_our_ops(fresh_threads):
    assert threads.num_threads() == 3
    assert set_up_runtime(1) == 1
    assert threads.num_threads() == 1
    assert fresh_threads == [1]


def test_without_threads_the_environment_decides(fresh_threads):
    assert set_up_runtime(None) == 3
    assert threads.num_threads() == 3
    assert fresh_threads == [3]


@pytest.mark.parametrize("bad", [0, -2])
def test_non_positive_threads_are_a_user_error(fresh_threads, bad):
    with pytest.raises(UserError, match="positive"):
        set_up_runtime(bad)
    with pytest.raises(ValueError, match="positive integer"):
        threads.set_num_threads(bad)


def test_bad_environment_value_says_what_is_expected(fresh_threads, monkeypatch):
    monkeypatch.setenv(threads.ENV, "two")
    with pytest.raises(ValueError, match="PADDLE_QWENVL_NUM_THREADS='two'"):
        threads.num_threads()


def test_processes_launched_on_one_host_share_its_cpus(monkeypatch):
    import os
    monkeypatch.setattr(threads, "_chosen", [])
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "2")            # paddle.distributed.launch --nproc_per_node 2
    threads._usable_cpus.cache_clear()
    try:
        assert threads.num_threads() == max(len(os.sched_getaffinity(0)) // 2, 1)
    finally:
        threads._usable_cpus.cache_clear()
