"""Keep freed tensor memory in the process instead of handing it back to the kernel.

Paddle's CPU tensors come from glibc malloc. With glibc's defaults, freed buffers at the top of the
heap are trimmed back to the kernel and large ones are unmapped, so the next op's output is fresh
memory that page-faults in, one zeroed 4 KB page at a time: a Qwen2-VL-2B vision forward (768
patches) took ~250,000 page faults per request here, ~7% of its time. keep_freed_memory() sets
the mmap threshold to 1 GB (glibc before 2.26 caps it at 32 MB: then 32 MB) and the trim
threshold to 1 GB, so freed buffers are reused (the process then keeps up to 1 GB of freed heap
instead of returning it). A 1288x728 image's vision activations are ~100 MB each: with a 32 MB
threshold they still faulted in fresh (4 bf16 vision blocks 2.79 -> 1.93 s with 1 GB).

Skipped when the user tunes malloc already (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or
GLIBC_TUNABLES set), when PADDLE_QWENVL_KEEP_FREED_MEMORY=0, and where libc has no mallopt.
"""
import ctypes
import ctypes.util
import functools
import os

from . import settings

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # mallopt parameters (malloc.h)
MMAP_THRESHOLDS = (1 << 30, 32 << 20)               # the first glibc accepts (old ones cap it at 32 MB)
TRIM_THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
ENV = settings.KEEP_FREED_MEMORY.env


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Once per process; True when the thresholds were set."""
    if not settings.keep_freed_memory() or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):            # not glibc (or no libc found)
        return False
    if not any(mallopt(M_MMAP_THRESHOLD, value) for value in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
