"""The one thread knob for our compiled ops.

Paddle sets OMP_NUM_THREADS=1 on import, which would leave all but one core idle. Every compiled op
takes an explicit `num_threads` instead, read here:
    set_num_threads(n)              this process uses n (the CLI's --threads calls it)
    PADDLE_QWENVL_NUM_THREADS=<n>   use n threads (set it lower when several processes share cores)
    unset                           the CPUs this process may run on (sched affinity / cgroup),
                                    asked once per process (every op call reads this knob), shared
                                    evenly by the processes paddle.distributed.launch started on
                                    this host (PADDLE_LOCAL_SIZE)
"""
import functools
import os

from .. import settings

ENV = settings.NUM_THREADS.env
_chosen = []            # [n] once set_num_threads(n) ran


def set_num_threads(n: int) -> None:
    """From now on every op of this process runs on n threads, whatever the environment says."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer; got {n!r}")
    _chosen[:] = [n]


@functools.lru_cache(maxsize=None)
def _usable_cpus() -> int:
    sharing = int(os.environ.get("PADDLE_LOCAL_SIZE", "1") or 1)       # tensor-parallel ranks on this host
    return max(len(os.sched_getaffinity(0)) // sharing, 1)              # a system call: once per process


def num_threads() -> int:
    if _chosen:
        return _chosen[0]
    return settings.num_threads() or _usable_cpus()
