"""Benchmarks the compiled CPU ops against this machine's limits and Paddle's stock ops, in one run.

    python scripts/bench_ops.py [--threads N] [--quick]

Prints the measured DRAM read bandwidth and oneDNN peak GEMM first, then for each op its GB/s or
GFLOP/s, the fraction of the relevant limit, and the stock Paddle op on the same shapes. Each
figure is the best of several repetitions (the machine is shared; best-of is the least noisy).
"""
import argparse
import time

import numpy as np
import paddle

from paddle_qwenvl.layers.attention_metadata import AttentionMetadata
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.ops.linear import linear
from paddle_qwenvl.ops.paged_attention import paged_attention, paged_attention_ref
from paddle_qwenvl.ops.weight_only_linear import quantize_weight, weight_only_linear


def best_seconds(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def row(name, value, unit, limit, stock=None):
    frac = f"{value / limit:6.1%} of limit" if limit else ""
    extra = f"   stock Paddle {stock:8.1f} {unit}  (x{value / stock:.1f})" if stock else ""
    print(f"  {name:<44} {value:8.1f} {unit}  {frac}{extra}", flush=True)


class DramBandwidth:
    """Best DRAM read bandwidth seen so far (all threads summing a 512 MB buffer, far beyond the
    32 MB L3). Re-probed before every section: on a shared machine one probe can land in a busy
    moment, and the limit must not be understated."""

    def __init__(self, nt, reps):
        self.nt, self.reps, self.best = nt, reps, 0.0
        self.buf = paddle.ones([512 * 1024 * 1024 // 4])

    def probe(self):
        t = best_seconds(lambda: compiled_ops().pqv_read_sum(self.buf, self.nt), self.reps)
        self.best = max(self.best, self.buf.numel().item() * 4 / t / 1e9)
        return self.best


def peak_gemm(reps):
    x, w = paddle.randn([2048, 2048]), paddle.randn([2048, 2048])
    f32 = 2 * 2048 ** 3 / best_seconds(lambda: linear(x, w), reps) / 1e9
    wb = w.astype("bfloat16")
    bf16 = 2 * 2048 ** 3 / best_seconds(lambda: linear(x, wb), reps) / 1e9
    return f32, bf16


def copies_beyond_cache(nbytes, cache_bytes=128 << 20):
    """How many weight copies to cycle through so that every call reads from DRAM, not L3."""
    return max(1, -(-cache_bytes // nbytes))


def cycled(fn_of_copy, count):
    state = {"i": 0}

    def call():
        fn_of_copy(state["i"] % count)
        state["i"] += 1
    return call


def bench_decode_gemv(dram, reps, shapes):
    bw = dram.probe()
    print(f"decode GEMV, M=1 (GB/s of weight bytes; limit = DRAM read {bw:.1f} GB/s; weights cycled past L3)")
    for k, n in shapes:
        w = paddle.randn([n, k]) * 0.02
        x = paddle.randn([1, k])
        stock = n * k * 4 / best_seconds(lambda: paddle.matmul(x, w, transpose_y=True), reps) / 1e9
        for algo, group, exact in (("weight_only_int8", 128, True), ("weight_only_int8", 128, False),
                                   ("weight_only_int4", 128, False)):
            q, s = quantize_weight(w, algo, group)
            nbytes = q.numel().item()
            copies = [(q.clone(), s.clone()) for _ in range(copies_beyond_cache(nbytes))]
            fn = cycled(lambda i: weight_only_linear(x, *copies[i], None, algo, group, exact), len(copies))
            gbs = nbytes / best_seconds(fn, reps) / 1e9
            path = "fp32 x" if exact else "int8 x VNNI"
            row(f"{algo} ({path}) {k}x{n}", gbs, "GB/s", bw, stock)
            del copies
        del w


def bench_prefill_gemm(peak_f32, reps, m, k, n):
    peak_f32 = max(peak_f32, peak_gemm(reps)[0])         # re-probed, best kept (shared machine)
    print(f"prefill GEMM M={m} (GFLOP/s; limit = oneDNN fp32 2048^3 peak {peak_f32:.1f} GFLOP/s)")
    x, w = paddle.randn([m, k]), paddle.randn([n, k]) * 0.02
    flops = 2 * m * n * k / 1e9
    stock = flops / best_seconds(lambda: paddle.matmul(x, w, transpose_y=True), reps)
    row(f"linear fp32 {m}x{k}x{n}", flops / best_seconds(lambda: linear(x, w), reps), "GFLOP/s", peak_f32, stock)
    wb = w.astype("bfloat16")
    row(f"linear bf16 weights {m}x{k}x{n}", flops / best_seconds(lambda: linear(x, wb), reps), "GFLOP/s", peak_f32, stock)
    q, s = quantize_weight(w, "weight_only_int8")
    row(f"weight_only_int8 {m}x{k}x{n}", flops / best_seconds(lambda: weight_only_linear(x, q, s), reps),
        "GFLOP/s", peak_f32, stock)


def decode_batch(num_seqs, ctx, hq, hkv, d, block_size=16):
    rng = np.random.default_rng(0)
    blocks = (ctx + block_size - 1) // block_size
    tables = rng.permutation(num_seqs * blocks).reshape(num_seqs, blocks).astype(np.int32)
    slots = tables[:, (ctx - 1) // block_size] * block_size + (ctx - 1) % block_size
    meta = AttentionMetadata([1] * num_seqs, [ctx] * num_seqs, paddle.to_tensor(slots.astype(np.int64)),
                             paddle.to_tensor(tables), block_size)
    cache = lambda: paddle.randn([num_seqs * blocks * block_size, hkv, d])
    return paddle.randn([num_seqs, hq, d]), paddle.randn([num_seqs, hkv, d]), paddle.randn([num_seqs, hkv, d]), \
        cache(), cache(), meta


def bench_decode_attention(dram, reps, ctx):
    bw = dram.probe()
    print(f"decode paged attention (GB/s of K+V bytes read; limit = DRAM read {bw:.1f} GB/s)")
    for num_seqs, hq, hkv, d in ((1, 12, 2, 128), (4, 12, 2, 128), (4, 28, 4, 128)):
        q, k, v, kc, vc, meta = decode_batch(num_seqs, ctx, hq, hkv, d)
        kv_bytes = 2 * num_seqs * ctx * hkv * d * 4
        run = lambda f: kv_bytes / best_seconds(lambda: f(q, k, v, kc, vc, meta, d ** -0.5), reps) / 1e9
        row(f"seqs={num_seqs} ctx={ctx} Hq={hq} Hkv={hkv} D={d}", run(paged_attention), "GB/s", bw,
            run(paged_attention_ref))


def bench_elementwise(dram, reps, m=512, hidden=2048, inter=11008):
    """Memory-bound fused ops: GB/s of bytes read + written (limit = DRAM read bandwidth)."""
    bw = dram.probe()
    from paddle_qwenvl.ops.activation import swiglu, swiglu_ref
    from paddle_qwenvl.ops.norm import rms_norm, rms_norm_ref
    print(f"fused elementwise, {m} tokens (GB/s of bytes read+written; limit = DRAM read {bw:.1f} GB/s)")
    x, r, w = paddle.randn([m, hidden]), paddle.randn([m, hidden]), paddle.randn([hidden])
    nbytes = 4 * m * hidden * 4                                # x, residual in; out, residual out
    gbs = lambda f: nbytes / best_seconds(f, reps) / 1e9
    row(f"add+rms_norm {m}x{hidden}", gbs(lambda: rms_norm(x, w, 1e-6, r)), "GB/s", bw,
        gbs(lambda: rms_norm_ref(x, w, 1e-6, r)))
    gu = paddle.randn([m, 2 * inter])
    nbytes = 3 * m * inter * 4
    row(f"swiglu {m}x{2 * inter}", gbs(lambda: swiglu(gu)), "GB/s", bw, gbs(lambda: swiglu_ref(gu)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="PADDLE_QWENVL_NUM_THREADS for this run")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no lm_head shape")
    args = ap.parse_args()
    if compiled_ops() is None:
        raise SystemExit("compiled ops unavailable (see the warning above): nothing to benchmark")
    import os
    if args.threads:
        os.environ["PADDLE_QWENVL_NUM_THREADS"] = str(args.threads)
    from paddle_qwenvl.ops.threads import num_threads
    nt = num_threads()
    paddle.base.core.set_num_threads(nt)                     # stock Paddle ops get the same threads
    reps = 3 if args.quick else 7
    print(f"threads={nt}  build={build_info()}")
    dram = DramBandwidth(nt, reps)
    bw = dram.probe()
    peak_f32, peak_bf16 = peak_gemm(reps)
    print(f"limits: DRAM read {bw:.1f} GB/s (re-probed per section, best kept); "
          f"oneDNN GEMM 2048^3 fp32 {peak_f32:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s")
    shapes = [(2048, 11008), (11008, 2048)] + ([] if args.quick else [(2048, 151936)])
    bench_decode_gemv(dram, reps, shapes)
    bench_prefill_gemm(peak_f32, reps, 512, 2048, 11008)
    bench_decode_attention(dram, reps, ctx=4096)
    bench_elementwise(dram, reps)
    print(f"DRAM read bandwidth, best over the run: {dram.probe():.1f} GB/s")


if __name__ == "__main__":
    main()
