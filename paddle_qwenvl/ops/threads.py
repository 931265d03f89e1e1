"""The one thread knob for our compiled ops.

Paddle sets OMP_NUM_THREADS=1 on import, which would leave all but one core idle. Every compiled op
takes an explicit `num_threads` instead, read here:
    PADDLE_QWENVL_NUM_THREADS=<n>   use n threads (set it lower when several processes share cores)
    unset                           the CPUs this process may run on (sched affinity / cgroup)
"""
import os

ENV = "PADDLE_QWENVL_NUM_THREADS"


def num_threads() -> int:
    value = os.environ.get(ENV, "").strip()
    if not value:
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ENV}={value!r}: expected a positive integer thread count")
    return int(value)
