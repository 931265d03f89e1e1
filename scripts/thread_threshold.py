"""How much work an op needs before a second thread pays: per-call time at 1 vs N threads.

    python scripts/thread_threshold.py [--threads 2] [--busy]

--busy keeps one core spinning in another process (what a shared machine looks like). Work is
counted as in external_ops/common.h's threads_for: bytes streamed, or multiply-adds for GEMMs
with more than one row. The library default (work_per_thread(), 1 MiB) came
from these tables; PADDLE_QWENVL_WORK_PER_THREAD=0 is set here so the ops honour the count asked.
Figures are medians of 7 batches (a busy machine makes best-of hide the stalls being measured).
"""
import argparse
import os
import subprocess
import sys
import time

os.environ["PADDLE_QWENVL_WORK_PER_THREAD"] = "0"

from paddle_qwenvl.ops._build import compiled_ops  # noqa: E402  (first: filters Paddle's ccache warning)
from paddle_qwenvl.ops.weight_only_linear import quantize_weight  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

rng = np.random.default_rng(0)


def rand(*shape):
    return paddle.to_tensor(rng.standard_normal(shape).astype("float32"))


def cases(ops):
    """(op, work units, call(num_threads)) over sizes from a small model's decode to prefill."""
    for m, h in ((1, 256), (1, 1536), (16, 1536), (64, 1536), (256, 1536)):
        x, w = rand(m, h), rand(h)
        yield "rms_norm", 8 * m * h, lambda nt, x=x, w=w: ops.pqv_rms_norm(x, w, 1e-6, nt)
    for m, i in ((1, 768), (1, 8960), (8, 8960), (32, 8960)):
        g = rand(m, 2 * i)
        yield "swiglu", 12 * m * i, lambda nt, g=g: ops.pqv_swiglu(g, nt)
    for t in (1, 16, 64, 256):
        x, c = rand(t, 12, 128), rand(t, 128)
        yield "rotary", 8 * t * 13 * 128, lambda nt, x=x, c=c: ops.pqv_rotary(x, c, c, nt)
    for n, k in ((512, 256), (1536, 256), (1536, 1536), (4096, 1536), (8960, 1536)):
        (q, s), x = quantize_weight(rand(n, k)), rand(1, k)
        yield "int8_gemv", n * k, lambda nt, x=x, q=q, s=s: ops.pqv_weight_only_int8(x, q, s, None, True, nt)
    for m, n, k in ((1, 512, 256), (1, 1536, 256), (1, 1536, 1536), (16, 768, 256), (64, 768, 256),
                    (256, 1536, 1536)):
        x, w = rand(m, k), rand(n, k)
        yield "linear", max(4 * (m * k + n * k + m * n), m * n * k), \
            lambda nt, x=x, w=w: ops.pqv_linear(x, w, None, False, nt)


def per_call_us(fn, nt, reps):
    batches = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(reps):
            fn(nt)
        batches.append((time.perf_counter() - start) / reps)
    return float(np.median(batches)) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="spin one core in another process meanwhile")
    args = parser.parse_args()
    ops = compiled_ops()
    if ops is None:
        sys.exit("compiled ops unavailable (see the warning above)")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        print(f"{'op':10s} {'work':>10s} {'1T us':>9s} {f'{args.threads}T us':>9s} {'ratio':>6s}")
        for name, work, fn in cases(ops):
            fn(1), fn(args.threads)
            reps = max(3, min(200, int(20000 / max(per_call_us(fn, 1, 3), 1.0))))   # ~20 ms a batch
            one, many = per_call_us(fn, 1, reps), per_call_us(fn, args.threads, reps)
            print(f"{name:10s} {work:10d} {one:9.1f} {many:9.1f} {many / one:6.2f}", flush=True)
    finally:
        if busy:
            busy.kill()


if __name__ == "__main__":
    main()
