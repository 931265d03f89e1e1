"""Dense linear y = x @ w^T + bias through oneDNN (fp32, or bf16 weights).

x (M, K) float32 or bfloat16; w (N, K) float32 or bfloat16 in HF layout; bias (N,) float32.
bf16 weights: x is rounded to bf16 and the GEMM accumulates in fp32 (a bfloat16 model's math), or
with exact=True a float32 x meets the weights widened to float32: the float32 math, bit for bit
what fp32 weights holding the same values give in decode (a float32 model keeps published bf16
weights as they are: half the bytes per decode step). The result has x's dtype. Without a oneDNN
build the reference (paddle.matmul in fp32) runs instead.

Which kernel runs is the op's choice by rows (docs/kernels.md, Dispatch): in bf16 math on a CPU with
AVX512-BF16, below BF16_GEMM_ROWS rows (a batch of decodes, a prefill chunk) our vdpbf16ps kernel,
which reads the weights once for all rows; from there oneDNN's bf16 GEMM. The crossover is where the
two levelled on an AMD Zen 4 (2 threads, gate_up of Qwen2-VL-2B, 1536x17920): ours took 0.68x
oneDNN's time at 16 rows, 0.78x at 24, 0.92x at 32, 1.07x at 40 (`python scripts/bench_ops.py --only rows`).
"""
import paddle

from ._build import build_info, compiled_ops, exec_attrs

DTYPES = (paddle.float32, paddle.bfloat16)
# rows from which bf16 math runs on oneDNN's GEMM (the op's attr bf16_gemm_rows; the fused decoder ops get it too)
BF16_GEMM_ROWS = 36


def linear_ref(x, w, bias=None):
    y = paddle.matmul(x.astype("float32"), w.astype("float32"), transpose_y=True)
    return (y if bias is None else y + bias.astype("float32")).astype(x.dtype)


def _check(x, w, bias):
    xs, ws = x.shape, w.shape                         # each .shape is a call into Paddle: read once
    if len(xs) != 2 or len(ws) != 2 or xs[1] != ws[1]:
        raise ValueError(f"x must be (M, K) and w (N, K); got {xs} and {ws}")
    if x.dtype not in DTYPES or w.dtype not in DTYPES:
        raise ValueError(f"x and w must be float32 or bfloat16; got {x.dtype}, {w.dtype}")
    if bias is not None and bias.shape != [ws[0]]:
        raise ValueError(f"bias must be ({ws[0]},); got {bias.shape}")


def linear(x, w, bias=None, exact: bool = False, bf16_gemm_rows: int = None):
    """x (M, K) @ w (N, K)^T + bias -> (M, N) in x's dtype; exact: fp32 math for bf16 w (see above).
    bf16_gemm_rows: where oneDNN's GEMM takes over in bf16 math (None: BF16_GEMM_ROWS); benchmarks and
    tests move it to compare both sides at one row count."""
    dygraph = paddle.in_dynamic_mode()            # to_static: symbolic shapes, the op checks them
    if dygraph:
        _check(x, w, bias)
    if not build_info()["onednn"] or (dygraph and x.shape[0] == 0):
        return linear_ref(x, w, bias)
    b = bias if bias is None or bias.dtype == paddle.float32 else bias.astype("float32")   # astype copies
    rows = int(bf16_gemm_rows or BF16_GEMM_ROWS)
    if w.dtype == paddle.float32 and x.dtype == paddle.bfloat16:   # fp32 GEMM, then back to bf16
        return compiled_ops().pqv_linear(x.astype("float32"), w, b, False, rows, *exec_attrs()).astype(x.dtype)
    return compiled_ops().pqv_linear(x, w, b, bool(exact), rows, *exec_attrs())
