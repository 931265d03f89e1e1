"""The benchmarks' timer and memory-bandwidth probe.

time_calls is the one timer: every candidate is called in turn, round after round, so all of them
get the same stretches of a shared machine's time (DRAM bandwidth and oneDNN's AMX GEMM switch
between regimes from one second to the next: a figure measured after its reference could land in
the other regime). best_seconds, median_seconds and interleaved_rates read its figures.
ReadProbe measures the DRAM read bandwidth that memory-bound work is judged against; its operands,
like a benchmark's, are cycled through enough copies to exceed the L3 (copies_beyond_cache, cycled).
DotPeak measures the multiply-add rate that compute-bound kernels are judged against.

Imports no Paddle at module level, so HF-side benchmark processes can use it too."""
import statistics
import time

PROBE_STREAMS = (1, 4, 8)   # streams per thread the read probe tries; its figure is the fastest


def time_calls(fns: dict, repeats: int, calls: int = 1, warmup: int = 1, settle: int = 0) -> dict:
    """{name: [seconds per call, one per timed round]} of fns {name: fn}.

    `warmup` untimed rounds, then `repeats` timed ones; a round calls every candidate in turn,
    `calls` times back to back (its time divided by `calls`: for calls of a few microseconds),
    after `settle` untimed calls of its own (candidates from libraries with their own OpenMP
    runtimes: one's threads spin on for a while after its call, and the other's first call shares
    the cores with them)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    seconds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            seconds[name].append((time.perf_counter() - start) / calls)
    return seconds


def best_seconds(fn, repeats: int, calls: int = 1, warmup: int = 1) -> float:
    """The shortest time per call over `repeats` rounds: the least noisy figure on a shared machine."""
    return min(time_calls({"fn": fn}, repeats, calls, warmup)["fn"])


def median_seconds(fn, repeats: int, calls: int = 1, warmup: int = 1) -> float:
    """The median time per call over `repeats` rounds: keeps the stalls of a busy machine, which
    best-of hides."""
    return statistics.median(time_calls({"fn": fn}, repeats, calls, warmup)["fn"])


def interleaved_rates(jobs: dict, repeats: int) -> dict:
    """{name: best work per second, in G/s} of jobs {name: (work, fn)} (work: bytes or FLOPs of one
    call), called in turn `repeats` times after one warm-up round."""
    seconds = time_calls({name: fn for name, (_, fn) in jobs.items()}, repeats)
    return {name: work / min(seconds[name]) / 1e9 for name, (work, _) in jobs.items()}


def l3_bytes(default: int = 32 << 20) -> int:
    """This CPU's last-level cache, from sysfs ("107520K"), else `default`."""
    try:
        text = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
        return int(text[:-1]) << {"K": 10, "M": 20}[text[-1]]
    except (OSError, ValueError, KeyError):
        return default


def copies_beyond_cache(nbytes: int) -> int:
    """How many operand copies of `nbytes` to cycle through so that every call reads from DRAM, not
    L3: at least 128 MB and 3x the L3 in all (an L3 that is not strictly LRU keeps part of a cycle
    only a little larger than itself: stock GEMV rows with 2 x 90 MB copies read faster than the
    DRAM probe)."""
    return max(1, -(-max(128 << 20, 3 * l3_bytes()) // nbytes))


def cycled(fn_of_copy, count: int):
    """A call that runs fn_of_copy(0), then fn_of_copy(1), ... fn_of_copy(count - 1), 0, ..."""
    state = {"i": 0}

    def call():
        fn_of_copy(state["i"] % count)
        state["i"] += 1
    return call


class ReadProbe:
    """DRAM read bandwidth, in GB/s, each time it is called.

    All threads sum one `slice_bytes` slice at a time out of copies_beyond_cache(slice_bytes)
    slices, so that no read reuses what an earlier one left in the cache; each thread reads its
    part as 1, 4 and 8 streams side by side (more misses in flight: on a 2-thread Intel machine 4-8
    streams read 26-31 GB/s where 1 read ~20 and MKL's GEMV 27), and the figure is the fastest.
    Slices of 128 MB take a few ms to read: as short as a kernel's call, so on a busy machine the
    probe has the same chance as the kernel of landing in a quiet moment. (One 128 MB buffer is not
    enough on a 300 MB L3: it read 49-51 GB/s where 0.5-2 GB buffers read 28-40.)
    Without the compiled ops numpy reads on one thread, well below what the hardware gives (a lower
    bound). `how` says which."""

    def __init__(self, threads: int = None, slice_bytes: int = 128 << 20):
        import numpy as np

        from ..ops._build import compiled_ops, exec_attrs
        from ..ops.threads import num_threads
        ops, n, count = compiled_ops(), slice_bytes // 4, copies_beyond_cache(slice_bytes)
        self.slice_bytes = n * 4
        if ops is not None:
            import paddle
            threads = threads or num_threads()
            slices = [paddle.ones([n], dtype="float32") for _ in range(count)]
            self.reads = [cycled(lambda i, s=s: ops.pqv_read_sum(slices[i], s, *exec_attrs(threads)), count)
                          for s in PROBE_STREAMS]
            self.how = f"compiled read, {threads} threads, the fastest of 1, 4 or 8 streams each"
        else:
            slices = [np.ones(n, dtype=np.float32) for _ in range(count)]
            self.reads = [cycled(lambda i: slices[i].max(), count)]
            self.how = "numpy max, 1 thread (lower bound)"

    def __call__(self, repeats: int = 5) -> float:
        """GB/s: the best of `repeats` slice reads (after one warm-up read) for each stream count."""
        return max(self.slice_bytes / best_seconds(read, repeats) / 1e9 for read in self.reads)


def read_bandwidth_gbps(megabytes: int = 1024, repeats: int = 5, threads: int = None) -> tuple:
    """(GB/s, how) of one ReadProbe of `megabytes` slices on `threads` (default: all of ours, the
    decode kernels' situation): the best of `repeats` full reads per stream count."""
    probe = ReadProbe(threads, megabytes << 20)
    return probe(repeats), probe.how


# kind -> (pqv_dot_peak's kind, multiply-adds per instruction, the instruction)
DOT_KINDS = {"int8": (0, 64, "vpdpbusd"), "bf16": (1, 32, "vdpbf16ps")}


class DotPeak:
    """The rate of this CPU's dot-product instruction on all threads, in TOP/s (2 ops per
    multiply-add), each time it is called: "int8" = vpdpbusd (the VNNI kernels'), "bf16" =
    vdpbf16ps (our bf16 kernels' and, without AMX, oneDNN's bf16 GEMM's). Registers only, a dozen
    independent chains per thread (pqv_dot_peak): no kernel doing real work beats it. Like DRAM
    bandwidth it moves with the clock and the neighbours of a virtual machine, so it is probed
    around the measurement it judges. Needs the compiled ops and the instruction (else a ValueError)."""

    def __init__(self, kind: str, threads: int = None, iters: int = 1_000_000):
        import paddle

        from ..ops._build import build_info, compiled_ops, exec_attrs
        from ..ops.threads import num_threads
        if kind not in DOT_KINDS:
            raise ValueError(f"kind must be one of {sorted(DOT_KINDS)}; got {kind!r}")
        ops = compiled_ops()
        if ops is None or not build_info()["avx512" if kind == "int8" else "bf16"]:
            raise ValueError(f"no compiled {kind} dot-product kernels on this CPU to probe")
        code, macs, _ = DOT_KINDS[kind]
        x, attrs = paddle.zeros([1]), exec_attrs(threads or num_threads())
        self.call = lambda: ops.pqv_dot_peak(x, code, iters, *attrs)
        self.ops = 2 * macs * float(self.call()[:, 1].sum())      # the instructions all threads ran

    def __call__(self, repeats: int = 3) -> float:
        return self.ops / best_seconds(self.call, repeats) / 1e12
