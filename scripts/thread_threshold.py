"""How much work an op needs before a second thread pays: per-call time at 1 vs N threads.

    python scripts/thread_threshold.py [--threads 2] [--busy]

--busy keeps one core spinning in another process (what a shared machine looks like). Work is
counted as in external_ops/common.h's pqv::Exec::threads_for: bytes streamed, or multiply-adds for
GEMMs with more than one row. The library default (PADDLE_QWENVL_WORK_PER_THREAD, 1 MiB) came
from these tables; PADDLE_QWENVL_WORK_PER_THREAD=0 is set here so the ops honour the count asked.
Figures are medians of 7 batches (a busy machine makes best-of hide the stalls being measured).
"""
import argparse
import os
import subprocess
import sys

os.environ["PADDLE_QWENVL_WORK_PER_THREAD"] = "0"

from paddle_qwenvl.ops._build import compiled_ops  # noqa: E402  (first: filters Paddle's ccache warning)
from paddle_qwenvl.ops.activation import swiglu  # noqa: E402
from paddle_qwenvl.ops.linear import linear  # noqa: E402
from paddle_qwenvl.ops.norm import rms_norm  # noqa: E402
from paddle_qwenvl.ops.rotary import rotary_qkv  # noqa: E402
from paddle_qwenvl.ops.threads import set_num_threads  # noqa: E402
from paddle_qwenvl.ops.weight_only_linear import quantize_weight, weight_only_linear  # noqa: E402
from paddle_qwenvl.tools.timing import median_seconds  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

rng = np.random.default_rng(0)


def rand(*shape):
    return paddle.to_tensor(rng.standard_normal(shape).astype("float32"))


def cases():
    """(op, work units, call) over sizes from a small model's decode to prefill; each call goes
    through the op's wrapper, on the threads of the last set_num_threads."""
    for m, h in ((1, 256), (1, 1536), (16, 1536), (64, 1536), (256, 1536)):
        x, w = rand(m, h), rand(h)
        yield "rms_norm", 8 * m * h, lambda x=x, w=w: rms_norm(x, w, 1e-6)
    for m, i in ((1, 768), (1, 8960), (8, 8960), (32, 8960)):
        g = rand(m, 2 * i)
        yield "swiglu", 12 * m * i, lambda g=g: swiglu(g)
    for t in (1, 16, 64, 256):
        qkv, c = rand(t, 16 * 128), rand(t, 128)                    # 12 query + 2 x 2 kv heads of 128
        yield "rotary", 8 * t * (16 * 128 + 128), lambda qkv=qkv, c=c: rotary_qkv(qkv, c, c, 12, 2)
    for n, k in ((512, 256), (1536, 256), (1536, 1536), (4096, 1536), (8960, 1536)):
        (q, s), x = quantize_weight(rand(n, k)), rand(1, k)
        yield "int8_gemv", n * k, lambda x=x, q=q, s=s: weight_only_linear(x, q, s, exact=True)
    for m, n, k in ((1, 512, 256), (1, 1536, 256), (1, 1536, 1536), (16, 768, 256), (64, 768, 256),
                    (256, 1536, 1536)):
        x, w = rand(m, k), rand(n, k)
        yield "linear", max(4 * (m * k + n * k + m * n), m * n * k), lambda x=x, w=w: linear(x, w)


def per_call_us(fn, nt, reps):
    """Microseconds per call on `nt` threads: the median of 7 batches of `reps` calls, after one
    untimed call."""
    set_num_threads(nt)
    return median_seconds(fn, 7, calls=reps) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="spin one core in another process meanwhile")
    args = parser.parse_args()
    if compiled_ops() is None:
        sys.exit("compiled ops unavailable (see the warning above)")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        print(f"{'op':10s} {'work':>10s} {'1T us':>9s} {f'{args.threads}T us':>9s} {'ratio':>6s}")
        for name, work, fn in cases():
            reps = max(3, min(200, int(20000 / max(per_call_us(fn, 1, 3), 1.0))))   # ~20 ms a batch
            one, many = per_call_us(fn, 1, reps), per_call_us(fn, args.threads, reps)
            print(f"{name:10s} {work:10d} {one:9.1f} {many:9.1f} {many / one:6.2f}", flush=True)
    finally:
        if busy:
            busy.kill()


if __name__ == "__main__":
    main()
