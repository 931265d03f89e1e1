"""Benchmarks the compiled CPU ops against this machine's limits and Paddle's stock ops, in one run.

    python scripts/bench_ops.py [--threads N] [--quick] [--only gemv,rows,gemm,torch,attention,prefill,vision,elementwise]

For each op: its GB/s or GFLOP/s, the fraction of the relevant limit, and the stock Paddle op on
the same shapes. Each figure is the best of several repetitions (the machine is shared; best-of
is the least noisy). Fairness:
- memory-bound rows read from DRAM: their operands (weights, KV caches, activations) are cycled
  through enough copies to exceed 3x this CPU's L3 (sysfs), and so is the DRAM probe;
- each memory-bound row alternates with its limit's probe (DRAM_ROUNDS rounds, best of each): the
  DRAM bandwidth switches between regimes (~30-35 and ~50-57 GB/s on 2 threads) within a run,
  and a limit probed minutes earlier can be in the other one.
"""
import argparse
import os
import re

import numpy as np
import paddle
import paddle.nn.functional as F

from paddle_qwenvl.ops.attention_metadata import AttentionMetadata
from paddle_qwenvl.ops._build import SRC_DIR, build_info, compiled_ops
from paddle_qwenvl.ops.linear import BF16_GEMM_ROWS, linear
from paddle_qwenvl.ops.paged_attention import paged_attention, paged_attention_ref
from paddle_qwenvl.ops.weight_only_linear import (EVERY_ROW_ON_VNNI, quant_gemm_rows, quantize_weight,
                                                  weight_only_linear)
from paddle_qwenvl.tools.roofline import Limit, Rows
from paddle_qwenvl.tools.timing import (DotPeak, ReadProbe, best_seconds, copies_beyond_cache, cycled,
                                         interleaved_rates, time_calls)

SECTIONS = ("gemv", "rows", "gemm", "torch", "attention", "prefill", "vision", "elementwise")
# (M, K, N) of the bf16 GEMMs a first token waits for (Qwen2-VL-2B): the prefill's gate, gate_up and
# down on 289 prompt tokens, the vision tower's qkv, fc1 and fc2 on a 448x448 image's 1024 patches
TORCH_SHAPES = ((289, 1536, 8960), (289, 1536, 17920), (289, 8960, 1536), (1024, 1280, 3840), (1024, 1280, 5120),
                (1024, 5120, 1280))


ROWS = Rows()               # every row printed, and the targets some of them are held to
row = ROWS.row


# Memory-bound rows alternate probe and measurement this many times (best of each). With one
# round, on a 2-thread machine a row of the first shape (a different one each run) sometimes
# read 48-62% where the same row repeated later in the process read 85-90%: one slow stretch of
# a few hundred ms had caught the whole row but neither probe.
DRAM_ROUNDS = 3


def dram_limit(nt, reps):
    """The DRAM read probe (tools.timing.ReadProbe: 128 MB slices cycled past the L3) at the best
    of 3 * reps reads, DRAM_ROUNDS rounds around each row."""
    probe = ReadProbe(nt)
    return Limit(lambda: probe(3 * reps), rounds=DRAM_ROUNDS)


def gemm_job(weight_dtype="float32"):
    """(FLOPs, call) of oneDNN's 2048^3 GEMM, fp32 activations, fp32 or bf16 weights."""
    x, w = paddle.randn([2048, 2048]), paddle.randn([2048, 2048]).astype(weight_dtype)
    return 2 * 2048 ** 3, lambda: linear(x, w)


def gemm_limit(reps):
    flops, call = gemm_job()
    return Limit(lambda: flops / best_seconds(call, reps) / 1e9)


def rate(work, fn, reps):
    """work (bytes or FLOPs) / best seconds, in G/s."""
    return work / best_seconds(fn, reps) / 1e9


def bench_decode_gemv(dram, reps, shapes):
    print("decode GEMV, M=1 (GB/s of weight bytes; weights cycled past L3; limit = DRAM read around "
          f"the row; {DRAM_ROUNDS} rounds of probe + measure)")
    for k, n in shapes:
        w = paddle.randn([n, k]) * 0.02
        x = paddle.randn([1, k])
        stock_copies = [w.clone() for _ in range(copies_beyond_cache(n * k * 4))]
        stock = rate(n * k * 4, cycled(lambda i: paddle.matmul(x, stock_copies[i], transpose_y=True),
                                       len(stock_copies)), reps)
        fn = cycled(lambda i: linear(x, stock_copies[i]), len(stock_copies))
        row(f"dense fp32 (linear) {k}x{n}", dram.around(lambda: rate(n * k * 4, fn, reps)), "GB/s", stock)
        del stock_copies
        bf16 = [w.astype("bfloat16") for _ in range(copies_beyond_cache(n * k * 2))]
        fn = cycled(lambda i: linear(x, bf16[i]), len(bf16))
        row(f"dense bf16 (linear) {k}x{n}", dram.around(lambda: rate(n * k * 2, fn, reps)), "GB/s", stock)
        fn = cycled(lambda i: linear(x, bf16[i], exact=True), len(bf16))     # a float32 model's bf16 weights
        row(f"dense bf16 exact (fp32 x) {k}x{n}", dram.around(lambda: rate(n * k * 2, fn, reps)), "GB/s", stock)
        del bf16
        for algo, group, exact in (("weight_only_int8", 128, True), ("weight_only_int8", 128, False),
                                   ("weight_only_int4", 128, False)):
            q, s = quantize_weight(w, algo, group)
            nbytes = q.numel().item()
            copies = [(q.clone(), s.clone()) for _ in range(copies_beyond_cache(nbytes))]
            fn = cycled(lambda i: weight_only_linear(x, *copies[i], None, algo, group, exact), len(copies))
            path = "fp32 x" if exact else "int8 x VNNI"
            target = ("limit", 0.8) if algo == "weight_only_int8" and not exact else None   # the default path
            row(f"{algo} ({path}) {k}x{n}", dram.around(lambda: rate(nbytes, fn, reps)), "GB/s", stock, target)
            del copies
        del w


def bench_rows(reps, rows, kind, k=1536, n=17920, group=128):
    """A linear by row count, weights cycled past L3, float32 x as the models pass it, for kind
    "bf16" (bf16 weights in bf16 math: our vdpbf16ps kernel below BF16_GEMM_ROWS rows) or a
    weight-only algo (the default path: VNNI kernels below quant_gemm_rows(), at every row count
    without AMX). Below the crossover ours against the oneDNN GEMM that ran there before (from
    16 rows), from it the GEMM against ours, called in turn (best of each). GB/s counts the weight
    bytes; "of peak": the new path's TOP/s against the dot-product instruction's rate (vdpbf16ps
    for bf16, vpdpbusd for the weight-only kinds; tools.timing.DotPeak) probed around the row."""
    if kind == "bf16":
        weights, cross = (paddle.randn([n, k]) * 0.02).astype("bfloat16"), BF16_GEMM_ROWS
        nbytes = n * k * 2
        call = lambda x, w, r: linear(x, w, bf16_gemm_rows=r)
    else:
        weights, cross = quantize_weight(paddle.randn([n, k]) * 0.02, kind, group), quant_gemm_rows()
        nbytes = weights[0].numel().item()
        call = lambda x, w, r: weight_only_linear(x, *w, None, kind, group, vnni_gemm_rows=r)
    ours = f"ours below {cross} rows" if cross < EVERY_ROW_ON_VNNI else "ours at every row count"
    print(f"{kind} {k}x{n} by rows M (float32 x; weights cycled past L3; new: {ours}; "
          f"old: oneDNN GEMM from 16 rows; called in turn, best of each)")
    peak = DotPeak("bf16" if kind == "bf16" else "int8")
    clone = (lambda w: tuple(t.clone() for t in w)) if isinstance(weights, tuple) else (lambda w: w.clone())
    copies = [clone(weights) for _ in range(copies_beyond_cache(nbytes))]
    for m in rows:
        x = paddle.randn([m, k])
        paths = {"new": cross}                          # M >= cross: the GEMM itself
        if 16 <= m < cross:
            paths["old"] = 16
        elif m >= cross:
            paths["ours"] = m + 1                       # where our kernel would stand
        fns = {name: cycled(lambda i, r=r: call(x, copies[i], r), len(copies)) for name, r in paths.items()}
        top = peak()
        best = {name: min(t) for name, t in time_calls(fns, 3 * reps).items()}
        top = max(top, peak())
        cells = [f"{name} {t * 1e3:7.2f} ms {nbytes / t / 1e9:5.1f} GB/s {2 * m * n * k / t / 1e12:5.3f} TOP/s"
                 for name, t in best.items()]
        other = next((name for name in best if name != "new"), None)
        ratio = f"   {other}/new x{best[other] / best['new']:.2f}" if other else ""
        share = f"   new: {2 * m * n * k / best['new'] / 1e12 / top:4.0%} of peak {top:.2f}"
        print(f"  M={m:<3d} " + "   ".join(cells) + ratio + share, flush=True)


def bench_prefill_gemm(gemm, reps, m, k, n):
    print(f"prefill GEMM M={m} (GFLOP/s; limit = oneDNN 2048^3 with the row's weight dtype; each row, its "
          f"limit and stock Paddle's matmul called in turn, best of each)")
    limits = {"fp32": gemm_job("float32"), "bf16": gemm_job("bfloat16")}
    x, w = paddle.randn([m, k]), paddle.randn([n, k]) * 0.02
    flops = 2 * m * n * k
    stock = (flops, lambda: paddle.matmul(x, w, transpose_y=True))
    wb = w.astype("bfloat16")
    q8, q4 = quantize_weight(w, "weight_only_int8"), quantize_weight(w, "weight_only_int4", 128)
    # weight-only prefill computes in bf16 where the CPU has it (build_info()['bf16']), else fp32
    wo = "bf16" if build_info()["bf16"] else "fp32"
    rows = ((f"linear fp32 {m}x{k}x{n}", lambda: linear(x, w), "fp32"),
            (f"linear bf16 weights {m}x{k}x{n}", lambda: linear(x, wb), "bf16"),
            (f"linear bf16 exact (fp32) {m}x{k}x{n}", lambda: linear(x, wb, exact=True), "fp32"),
            (f"weight_only_int8 ({wo}) {m}x{k}x{n}", lambda: weight_only_linear(x, *q8), wo),
            (f"weight_only_int4 ({wo}) {m}x{k}x{n}", lambda: weight_only_linear(x, *q4, algo="weight_only_int4"), wo),
            (f"weight_only_int8 exact (fp32) {m}x{k}x{n}", lambda: weight_only_linear(x, *q8, exact=True), "fp32"))
    for name, fn, limit_dtype in rows:
        stock_rate, value, limit = interleaved_rates(dict(stock=stock, row=(flops, fn), limit=limits[limit_dtype]),
                                                      3 * reps).values()
        if limit_dtype == "fp32":
            gemm.best = max(gemm.best, limit)
        row(name, (value, limit), "GFLOP/s", stock_rate, ("stock", 3.0))


def bench_vs_torch(reps, threads):
    """Our bf16 linear (bf16 weights, float32 x as a bf16 model passes it, rounded to bf16 inside)
    against torch's bf16 F.linear (what HF runs in bf16) on TORCH_SHAPES, called in turn in this
    process, each timed call after an untimed one of its own (time_calls' settle: the two OpenMP
    runtimes), best of each; both as TFLOP/s and as a share of vdpbf16ps's rate probed around the
    row (tools.timing.DotPeak; without AMX the ceiling of both). Skipped without torch (a test
    extra) or without native bf16."""
    try:
        import torch
    except ImportError:
        print("bf16 GEMM against torch: skipped (torch is not installed: pip install 'paddle-qwenvl[test]')")
        return
    if not build_info()["bf16"]:
        print("bf16 GEMM against torch: skipped (this CPU has no native bf16)")
        return
    torch.set_num_threads(threads)
    peak = DotPeak("bf16")
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())
    print(f"bf16 GEMM against torch {torch.__version__} (its oneDNN {onednn.group(1) if onednn else '?'}), TFLOP/s, "
          "called in turn (each after an untimed call of its own), best of each; share of the vdpbf16ps rate "
          "probed around the row")
    for m, k, n in TORCH_SHAPES:
        w = paddle.randn([n, k]) * 0.02
        x, wb = paddle.randn([m, k]), w.astype("bfloat16")
        tx = torch.from_numpy(x.numpy()).to(torch.bfloat16)
        tw = torch.from_numpy(w.numpy()).to(torch.bfloat16)
        fns = {"ours": lambda: linear(x, wb), "torch": lambda: torch.nn.functional.linear(tx, tw)}
        top = peak()
        best = {name: min(t) for name, t in time_calls(fns, 3 * reps, settle=1).items()}
        top = max(top, peak())
        tf = {name: 2 * m * n * k / t / 1e12 for name, t in best.items()}
        print(f"  {m}x{k}x{n:<6} ours {tf['ours']:.3f} ({tf['ours'] / top:4.0%})   torch {tf['torch']:.3f} "
              f"({tf['torch'] / top:4.0%})   ours/torch x{tf['ours'] / tf['torch']:.2f}   peak {top:.2f}", flush=True)


def paged_batch(q_len, ctx, num_seqs, hq, hkv, d, block_size=64, seed=0):
    """num_seqs sequences of ctx cached tokens, the last q_len of them new this step; blocks of 64
    tokens (decode costs the same with the engine's default 16) scattered over a shuffled pool, as in a
    server that has run for a while. Returns q, k, v, make_cache, meta."""
    rng = np.random.default_rng(seed)
    blocks = (ctx + block_size - 1) // block_size
    tables = rng.permutation(num_seqs * blocks).reshape(num_seqs, blocks).astype(np.int32)
    pos = np.arange(ctx - q_len, ctx)
    slots = (tables[:, pos // block_size] * block_size + pos % block_size).reshape(-1)
    meta = AttentionMetadata([q_len] * num_seqs, [ctx] * num_seqs, paddle.to_tensor(slots.astype(np.int64)),
                             paddle.to_tensor(tables), block_size)
    t = num_seqs * q_len
    make_cache = lambda: paddle.randn([num_seqs * blocks * block_size, hkv, d])
    return paddle.randn([t, hq, d]), paddle.randn([t, hkv, d]), paddle.randn([t, hkv, d]), make_cache, meta


def bench_decode_attention(dram, reps, ctx):
    print("decode paged attention (GB/s of K+V bytes read; caches cycled past L3; limit = DRAM read around "
          f"the row; {DRAM_ROUNDS} rounds of probe + measure); float32 caches, then a bfloat16 model's bf16 caches "
          "(half the bytes, the same arithmetic: no target, their gain is the time per call)")
    for num_seqs, hq, hkv, d in ((1, 12, 2, 128), (4, 12, 2, 128), (1, 28, 4, 128), (4, 28, 4, 128)):
        q, k, v, make_cache, meta = paged_batch(1, ctx, num_seqs, hq, hkv, d)
        name = f"seqs={num_seqs} ctx={ctx} Hq={hq} Hkv={hkv} D={d}"
        seconds = {}
        for dtype, nbytes in (("float32", 4), ("bfloat16", 2)):
            kv_bytes = 2 * num_seqs * ctx * hkv * d * nbytes
            caches = [(make_cache().astype(dtype), make_cache().astype(dtype))
                      for _ in range(copies_beyond_cache(kv_bytes))]
            run = lambda f: cycled(lambda i: f(q, k, v, *caches[i], meta, d ** -0.5), len(caches))
            measured = dram.around(lambda: rate(kv_bytes, run(paged_attention), reps))
            seconds[dtype] = kv_bytes / measured[0] / 1e9
            if dtype == "float32":
                stock = rate(kv_bytes, run(paged_attention_ref), max(1, reps // 2))
                row(name, measured, "GB/s", stock, ("limit", 0.6))
            else:
                row(f"{name} bf16", measured, "GB/s")
                print(f"    bf16 caches: {seconds['float32'] * 1e6:.0f} -> {seconds[dtype] * 1e6:.0f} us per call "
                      f"(x{seconds['float32'] / seconds[dtype]:.2f})", flush=True)
            del caches


def stock_causal_sdpa(q, k, v, scale):
    """Paddle's scaled_dot_product_attention on (1, m, H, D); kv heads repeated beforehand (untimed)."""
    return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, training=False, scale=scale)


def bench_prefill_attention(gemm, reps, lengths, hq=12, hkv=2, d=128):
    print(f"prefill paged attention, one fresh prompt, causal (GFLOP/s counting 4*m*m/2*D*Hq; "
          f"limit = oneDNN fp32 GEMM around the row): fp32 (the paged kernel's tiles) and, where the "
          f"CPU has native bf16, compute_dtype=bfloat16 (a bf16 model's: oneDNN bf16 GEMMs)")
    dtypes = ["float32"] + (["bfloat16"] if build_info()["bf16"] and build_info()["onednn"] else [])
    for m in lengths:
        q, k, v, make_cache, meta = paged_batch(m, m, 1, hq, hkv, d)
        kc, vc = make_cache(), make_cache()
        flops = 4 * m * m / 2 * d * hq
        rep = lambda x: paddle.repeat_interleave(x, hq // hkv, axis=1).unsqueeze(0)     # (1, m, Hq, D)
        stock = rate(flops, stock_causal_sdpa(q.unsqueeze(0), rep(k), rep(v), d ** -0.5), 1)
        for dtype in dtypes:
            ours = lambda: paged_attention(q, k, v, kc, vc, meta, d ** -0.5, dtype)
            row(f"m={m} Hq={hq} Hkv={hkv} D={d} {dtype}", gemm.around(lambda: rate(flops, ours, max(3, reps // 2))),
                "GFLOP/s", stock)


def amx_switched(value, fn):
    """fn with PADDLE_QWENVL_AMX_ATTENTION=value during the call (read by the op on every call)."""
    def call():
        saved = os.environ.get("PADDLE_QWENVL_AMX_ATTENTION")
        os.environ["PADDLE_QWENVL_AMX_ATTENTION"] = value
        try:
            return fn()
        finally:
            if saved is None:
                del os.environ["PADDLE_QWENVL_AMX_ATTENTION"]
            else:
                os.environ["PADDLE_QWENVL_AMX_ATTENTION"] = saved
    return call


def bench_vision_attention(reps, lengths, heads=16, d=80):
    """One frame of n patches (Qwen2-VL's vision heads): both compiled paths of block_attention."""
    from paddle_qwenvl.ops.block_attention import block_attention_gemm, block_attention_paged, block_attention_ref
    print(f"vision block attention, one block of n tokens, {heads} heads of {d}, non-causal (GFLOP/s counting "
          f"4*n*n*D*H; limit = oneDNN 2048^3 GEMM in the row's dtype; row, limit and stock called in turn)")
    limits = {"fp32": gemm_job("float32"), "bf16": gemm_job("bfloat16")}
    for n in lengths:
        q, k, v = (paddle.randn([n, heads, d]) for _ in range(3))
        flops, cu, scale = 4 * n * n * d * heads, [0, n], d ** -0.5
        stock = (flops, lambda: block_attention_ref(q, k, v, cu, scale))
        rows = [("paged kernel fp32", lambda: block_attention_paged(q, k, v, cu, scale), "fp32"),
                ("oneDNN GEMMs fp32", lambda: block_attention_gemm(q, k, v, cu, scale), "fp32")]
        if build_info()["bf16"]:
            rows.append(("oneDNN GEMMs bf16", amx_switched("0", lambda: block_attention_gemm(q, k, v, cu, scale, True)),
                         "bf16"))
        if build_info()["amx"]:
            rows.append(("fused AMX kernel bf16",
                         amx_switched("1", lambda: block_attention_gemm(q, k, v, cu, scale, True)), "bf16"))
        for name, fn, dtype in rows:
            stock_rate, value, limit = interleaved_rates(dict(stock=stock, row=(flops, fn), limit=limits[dtype]),
                                                          max(2, reps // 2)).values()
            row(f"n={n} {name}", (value, limit), "GFLOP/s", stock_rate)


def bench_elementwise(dram, reps, m=512, hidden=2048, inter=11008):
    """Memory-bound fused ops: GB/s of bytes read + written (limit = DRAM read bandwidth)."""
    from paddle_qwenvl.ops.activation import swiglu, swiglu_ref
    from paddle_qwenvl.ops.norm import rms_norm, rms_norm_ref
    print(f"fused elementwise, {m} tokens (GB/s of bytes read+written; inputs cycled past L3; "
          f"limit = DRAM read around the row)")
    w = paddle.randn([hidden])
    nbytes = 4 * m * hidden * 4                                # x, residual in; out, residual out
    xr = [(paddle.randn([m, hidden]), paddle.randn([m, hidden])) for _ in range(copies_beyond_cache(nbytes))]
    stock = rate(nbytes, cycled(lambda i: rms_norm_ref(xr[i][0], w, 1e-6, xr[i][1]), len(xr)), reps)
    fn = cycled(lambda i: rms_norm(xr[i][0], w, 1e-6, xr[i][1]), len(xr))
    row(f"add+rms_norm {m}x{hidden}", dram.around(lambda: rate(nbytes, fn, reps)), "GB/s", stock)
    nbytes = 3 * m * inter * 4
    gus = [paddle.randn([m, 2 * inter]) for _ in range(copies_beyond_cache(nbytes))]
    stock = rate(nbytes, cycled(lambda i: swiglu_ref(gus[i]), len(gus)), reps)
    fn = cycled(lambda i: swiglu(gus[i]), len(gus))
    row(f"swiglu {m}x{2 * inter}", dram.around(lambda: rate(nbytes, fn, reps)), "GB/s", stock)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="PADDLE_QWENVL_NUM_THREADS for this run")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no lm_head shape, prefill 1024 only")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections out of {SECTIONS}")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not only <= set(SECTIONS):
        raise SystemExit(f"--only {args.only}: sections are {', '.join(SECTIONS)}")
    if compiled_ops() is None:
        raise SystemExit("compiled ops unavailable (see the warning above): nothing to benchmark")
    if args.threads:
        os.environ["PADDLE_QWENVL_NUM_THREADS"] = str(args.threads)
    from paddle_qwenvl.memory import keep_freed_memory
    from paddle_qwenvl.ops.threads import num_threads
    keep_freed_memory()             # as a Predictor runs the ops: outputs reuse freed memory
    nt = num_threads()
    paddle.base.core.set_num_threads(nt)                     # stock Paddle ops get the same threads
    reps = 3 if args.quick else 7
    print(f"threads={nt}  build={build_info()}  (limits are probed around each row)")
    # a script run from scripts/ imports whichever paddle_qwenvl is installed, which may not be
    # this checkout (`pip install -e .` makes it so): say which kernels are being measured
    print(f"kernels built from {SRC_DIR}")
    dram, gemm = dram_limit(nt, reps), gemm_limit(reps)
    if "gemv" in only:
        bench_decode_gemv(dram, reps, [(2048, 11008), (11008, 2048)] + ([] if args.quick else [(2048, 151936)]))
    if "rows" in only:
        for kind in ("bf16", "weight_only_int8", "weight_only_int4"):
            bench_rows(reps, (1, 2, 4, 8, 15, 16, 24, 32, 40, 48, 64, 96, 128), kind)
    if "gemm" in only:
        bench_prefill_gemm(gemm, reps, 512, 2048, 11008)
    if "torch" in only:
        bench_vs_torch(reps, nt)
    if "attention" in only:
        bench_decode_attention(dram, reps, ctx=4096)
    if "prefill" in only:
        bench_prefill_attention(gemm, reps, [1024] if args.quick else [1024, 4096])
    if "vision" in only and build_info()["onednn"]:
        bench_vision_attention(reps, [1024] if args.quick else [1024, 4096])
    if "elementwise" in only:
        bench_elementwise(dram, reps)
    seen = [f"DRAM read {dram.best:.1f} GB/s"] * bool(dram.best) + [f"oneDNN fp32 GEMM {gemm.best:.1f} GFLOP/s"] * bool(gemm.best)
    print(f"best limits seen over the run: {', '.join(seen)}")
    ROWS.print_targets()


if __name__ == "__main__":
    main()
