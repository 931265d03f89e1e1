"""The benchmark toolkit: timed runs of a batch of requests and their report (vision, prefill,
decode tokens/s, end-to-end seconds, peak memory), memory bandwidth, resident memory, weight bytes
per decode step.

Imports no Paddle at module level, so HF-side benchmark processes can use it too."""
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import List

import numpy as np


def read_bandwidth_gbps(megabytes: int = 1024, repeats: int = 5, threads: int = None) -> tuple:
    """(GB/s, how): best of `repeats` full reads of a buffer far larger than the caches.

    With the compiled ops the read uses `threads` (default: all of ours, the decode kernels' situation);
    without them numpy reads on one thread, well below what the hardware gives (a lower bound).
    """
    import paddle

    from ..ops._build import compiled_ops
    from ..ops.threads import num_threads
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
    from ..layers.linear import Linear, WeightOnlyLinear
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



@dataclass
class RunStats:
    """One timed generate() of the whole batch. Stage times are seconds of wall time."""
    end_to_end: float
    vision: float              # vision tower, summed over the batch's requests (they run one by one)
    prefill: float             # prefill steps (shared by the batch)
    decode: float              # decode steps (shared by the batch)
    prompt_tokens: int         # summed over the batch
    completion_tokens: int     # summed over the batch
    decode_tokens: int         # tokens made by decode steps: completion minus one per request

    @property
    def other(self) -> float:
        """Preprocessing (image/video decode, resize, tokenize) and detokenizing."""
        return max(self.end_to_end - self.vision - self.prefill - self.decode, 0.0)


def stats_of(outputs, seconds: float) -> RunStats:
    return RunStats(end_to_end=seconds, vision=sum(o.timings.vision for o in outputs),
                    prefill=max(o.timings.prefill for o in outputs),
                    decode=max(o.timings.decode for o in outputs),
                    prompt_tokens=sum(o.usage.prompt_tokens for o in outputs),
                    completion_tokens=sum(o.usage.completion_tokens for o in outputs),
                    decode_tokens=sum(max(o.usage.completion_tokens - 1, 0) for o in outputs))


def timed_generate(predictor, requests: list, sampling):
    """(outputs, RunStats) of one generate() over all `requests`."""
    start = time.perf_counter()
    outputs = predictor.generate(list(requests), sampling)
    return outputs, stats_of(outputs, time.perf_counter() - start)


def run_benchmark(predictor, requests: list, sampling, warmup: int, repeat: int, progress=print):
    """(outputs of the last run, stats of the timed runs)."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f"need warm-up >= 0 and repeat >= 1 runs, got {warmup} and {repeat}")
    for i in range(warmup):
        timed_generate(predictor, requests, sampling)
        progress(f"warm-up {i + 1}/{warmup} done")
    runs = []
    for i in range(repeat):
        outputs, stats = timed_generate(predictor, requests, sampling)
        runs.append(stats)
        progress(f"run {i + 1}/{repeat}: {stats.end_to_end:.3f} s end-to-end, "
                 f"{stats.completion_tokens} tokens")
    return outputs, runs


def summarize(runs: List[RunStats]) -> dict:
    """Means over the timed runs, rates from the means."""
    mean = {k: statistics.fmean(getattr(r, k) for r in runs)
            for k in ("end_to_end", "vision", "prefill", "decode", "other")}
    first = runs[0]
    return dict(runs=len(runs), prompt_tokens=first.prompt_tokens, completion_tokens=first.completion_tokens,
                seconds=mean, end_to_end_min=min(r.end_to_end for r in runs),
                prefill_tokens_per_s=_rate(first.prompt_tokens, mean["prefill"]),
                decode_tokens_per_s=_rate(first.decode_tokens, mean["decode"]),
                end_to_end_tokens_per_s=_rate(first.completion_tokens, mean["end_to_end"]),
                peak_memory_bytes=peak_resident_bytes(), per_run=[asdict(r) for r in runs])


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else float("nan")


def format_report(summary: dict, header: str) -> str:
    s = summary["seconds"]
    lines = [header,
             f"  tokens: prompt {summary['prompt_tokens']}, generated {summary['completion_tokens']} "
             f"(whole batch); means over {summary['runs']} timed run(s)",
             f"  vision       {s['vision']:9.3f} s",
             f"  prefill      {s['prefill']:9.3f} s   {summary['prefill_tokens_per_s']:9.1f} tokens/s",
             f"  decode       {s['decode']:9.3f} s   {summary['decode_tokens_per_s']:9.1f} tokens/s",
             f"  other        {s['other']:9.3f} s   (preprocessing, detokenizing)",
             f"  end-to-end   {s['end_to_end']:9.3f} s   (best {summary['end_to_end_min']:.3f} s)",
             f"  peak memory  {summary['peak_memory_bytes'] / 2**30:9.2f} GiB (VmHWM: peak resident "
             "set of this process)"]
    return "\n".join(lines)


def write_json(path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
