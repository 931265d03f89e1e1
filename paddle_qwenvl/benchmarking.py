"""Measurements shared by the benchmarks: memory bandwidth, resident memory, weight bytes per token.

Imports no Paddle at module level, so HF-side benchmark processes can use it too."""
import time

import numpy as np


def read_bandwidth_gbps(megabytes: int = 1024, repeats: int = 5, threads: int = None) -> tuple:
    """(GB/s, how): best of `repeats` full reads of a buffer far larger than the caches.

    With the compiled ops the read uses `threads` (default: all of ours, the decode kernels' situation);
    without them numpy reads on one thread, well below what the hardware gives (a lower bound).
    """
    import paddle

    from .ops._build import compiled_ops
    from .ops.threads import num_threads
    n = megabytes * (1 << 20) // 4
    ops = compiled_ops()
    if ops is not None:
        buf, threads = paddle.ones([n], dtype="float32"), threads or num_threads()
        reads = [lambda s=s: ops.pqv_read_sum(buf, s, threads) for s in (1, 4, 8)]
        how = f"compiled read, {threads} threads, the fastest of 1, 4 or 8 streams each"
    else:
        buf = np.ones(n, dtype=np.float32)
        reads = [buf.max]
        how = "numpy max, 1 thread (lower bound)"
    for read in reads:
        read()
    best = min(_timed(read) for read in reads for _ in range(repeats))
    return n * 4 / best / 1e9, how


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024          # reported in kB
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def resident_bytes() -> int:
    """VmRSS: RAM this process holds now."""
    return _status_bytes("VmRSS")


def peak_resident_bytes() -> int:
    """VmHWM: the most RAM this process has held (weights + caches + activations + Python)."""
    return _status_bytes("VmHWM")


class PeakAnonymous:
    """Context manager sampling RssAnon (this process's own memory: heap, tensors) every `interval`
    seconds; `.peak` is the highest seen. VmHWM also counts file pages mapped while reading
    safetensors shards (page cache the kernel can drop), up to a whole shard while it is open."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, 0

    def __enter__(self):
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while True:
            self.peak = max(self.peak, _status_bytes("RssAnon"))
            if self._stop.wait(self.interval):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def decode_weight_bytes(model) -> int:
    """Bytes of weights one decode step reads: every decoder linear (float or quantized) and
    the lm_head (or the tied embedding matrix); embeddings are read one row per token."""
    from .layers.linear import Linear, WeightOnlyLinear
    total = 0
    for layer in model.model.layers.sublayers():
        if isinstance(layer, Linear):
            total += _nbytes(layer.weight)
        elif isinstance(layer, WeightOnlyLinear):
            total += _nbytes(layer.qweight) + _nbytes(layer.scales)
    head = getattr(model, "lm_head", None)
    if head is None:
        return total + _nbytes(model.model.embed_tokens.weight)
    return total + (_nbytes(head.weight) if isinstance(head, Linear) else _nbytes(head.qweight) + _nbytes(head.scales))


def _nbytes(t) -> int:
    return int(np.prod(t.shape)) * t.element_size()
