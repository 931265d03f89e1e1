"""Weight-only int8 / int4 linear: y = x @ dequantize(qweight)^T + bias.

Layouts (HF (out_features N, in_features K)):
  weight_only_int8: qweight int8 (N, K), scales float32 (N,)     symmetric per output channel
  weight_only_int4: qweight uint8 (N, K/2), scales float32 (N, K/group_size)
                    symmetric per group along K; q in [-8, 7] is stored as q + 8, byte j of a row
                    holding k = 2j in its low nibble and k = 2j+1 in its high nibble.
Activations x are (M, K) float32 or bfloat16; the result has x's dtype.

Decode (few rows) streams the weights once. exact=True keeps x in fp32 (equal to dequantized
math up to summation order); exact=False quantizes x to int8 per block (64 for int8 weights,
group_size for int4, as llama.cpp's q8 activations) and uses AVX512-VNNI, differing from the
dequantized math by at most sum_k |w_k| * blockmax|x| / 254. The default (exact=None) is VNNI,
as scripts/bench_ops.py measured it (2 threads, weights from DRAM, % of the DRAM read probe): on
an Intel Xeon int8 VNNI 80-92% against fp32 x 59-64% for 2048x11008 and
11008x2048 (fp32 x converts every weight to float: 3 instructions per 16 weights against 1 per
64), and faster for M > 1 too; int4 -> VNNI (the fp32 path is compute-bound unpacking nibbles).
On an AMD Zen 4, fp32 x matched VNNI for K <= 4096.
With x quantized, VNNI runs below quant_gemm_rows() rows: from 8 rows a register-blocked kernel
reads each panel of weight rows once for all rows and runs at the VNNI units' rate, where
oneDNN's bf16 GEMM on int8 weights or int4 tiles ran at a fraction of it on a CPU without AMX.
quant_gemm_rows() follows PADDLE_QWENVL_QUANT_PREFILL: 'vnni' keeps every row count on VNNI
(prompts and vision patches too, their activations quantized as decode's are), 'bf16' hands
VNNI_GEMM_ROWS rows and more to oneDNN's bf16 GEMM, 'auto' (the default) is 'bf16' where the CPU
has AMX (its bf16 tiles outrun VNNI) and 'vnni' elsewhere. Measured on an AMD Zen 4 (2 threads,
real-size Qwen2-VL-2B int8 with its vision tower quantized, bf16 math): prefill of 289 tokens
2.16 -> 1.19 s, vision 4.25 -> 2.75 s; eval_quant's top-1 agreement with float32 98.6 -> 98.3% on
the residual-dominated checkpoint, 91.6 -> 88.6% on the flat one (docs/quantization.md).
Prefill on the GEMM (M >= quant_gemm_rows(); exact=True or no AVX512: M >= 16) runs a oneDNN
GEMM: in bf16 (x rounded to bf16, products summed in fp32; oneDNN's AMX / AVX512-BF16 kernels,
~2-2.5x its fp32 GEMM) on a CPU with native bf16 unless exact=True, else in fp32. int8 weights
enter the bf16 GEMM as they are (oneDNN converts q, exact in bf16, inside it;
PADDLE_QWENVL_INT8_PREFILL=tiles or a oneDNN without that conversion writes dequantized tiles of q
first) and the per-channel scale is applied to the product; int4 weights are dequantized into
tiles of q * scale, rounded to bf16. Deviation from the dequantized math: at most
sum_k |x_k w_k| * 2**-8 for int8, 2**-7 for int4 (bf16 keeps 8 significant bits).
"""
import paddle

from ._build import compiled_ops, exec_attrs, int8_prefill_tiles, quant_prefill

ALGOS = ("weight_only_int8", "weight_only_int4")
GROUP_SIZES = (64, 128)
# x quantized (VNNI, int8 and int4) under QUANT_PREFILL 'bf16': the rows from which oneDNN's bf16
# GEMM runs, for the single ops and the fused decoder ops alike (their attr vnni_gemm_rows);
# scripts/bench_ops.py --only rows measures both sides.
VNNI_GEMM_ROWS = 65
EVERY_ROW_ON_VNNI = 1 << 62                       # the attr under 'vnni': no row count reaches the GEMM


def quant_gemm_rows() -> int:
    """The attr vnni_gemm_rows of this process (PADDLE_QWENVL_QUANT_PREFILL: _build.quant_prefill)."""
    return VNNI_GEMM_ROWS if quant_prefill() == "bf16" else EVERY_ROW_ON_VNNI


def _check_algo(algo, group_size):
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r}: expected one of {ALGOS}")
    if algo == "weight_only_int4" and group_size not in GROUP_SIZES:
        raise ValueError(f"group_size={group_size}: int4 supports {GROUP_SIZES}")


QUANTIZE_CHUNK = 1 << 22     # weights quantized at a time: bounds the float temporaries (~16 MB each)


def quantize_weight(w, algo="weight_only_int8", group_size=128):
    """w float (N, K) -> (qweight, scales) in the layouts above, on the compiled
    pqv_quantize_int8 / pqv_quantize_int4 when available (the reference's passes over the whole
    matrix: ~6 for int8, ~7 s of a 2B model's load; ~90 for int4, minutes). int8 matches the
    reference exactly; int4 follows the same rule, but a near-tie between two clip ratios may
    resolve differently because the error sums are added in another order (and the search
    multiplies by 1 / scale where the levels divide)."""
    _check_algo(algo, group_size)
    if w.ndim != 2:
        raise ValueError(f"weight must be (out_features, in_features); got shape {w.shape}")
    ops = compiled_ops()
    if ops is not None and algo == "weight_only_int8":
        return tuple(ops.pqv_quantize_int8(w.astype("float32"), *exec_attrs()))
    if ops is not None and w.shape[1] % group_size == 0:
        return tuple(ops.pqv_quantize_int4(w.astype("float32"), group_size, INT4_CLIP_RATIOS, *exec_attrs()))
    return quantize_weight_ref(w, algo, group_size)


def quantize_weight_ref(w, algo="weight_only_int8", group_size=128):
    """Pure-Paddle quantize_weight. Rows go in chunks of about QUANTIZE_CHUNK weights: the int4
    scale search holds several float copies of what it works on, which for a whole (151936, 2048)
    embedding would be gigabytes while loading."""
    _check_algo(algo, group_size)
    rows = max(1, QUANTIZE_CHUNK // max(w.shape[1], 1))
    if w.shape[0] <= rows:
        return _quantize_rows(w.astype("float32"), algo, group_size)
    parts = [_quantize_rows(w[i:i + rows].astype("float32"), algo, group_size) for i in range(0, w.shape[0], rows)]
    return paddle.concat([q for q, _ in parts]), paddle.concat([s for _, s in parts])


def _quantize_rows(w, algo, group_size):
    if algo == "weight_only_int8":
        scales = paddle.clip(w.abs().max(axis=1) / 127.0, min=1e-10)                # (N,)
        q = paddle.clip(paddle.round(w / scales.unsqueeze(1)), -127, 127)
        return q.astype("int8"), scales
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"in_features {k} is not a multiple of group_size {group_size}")
    g = w.reshape([n, k // group_size, group_size])
    scales = _int4_scales(g)                                                        # (N, G, 1)
    q = paddle.clip(paddle.round(g / scales), -8, 7).reshape([n, k]) + 8
    q = q.astype("int32")
    packed = q[:, 0::2] + q[:, 1::2] * 16                                            # (N, K/2)
    return packed.astype("uint8"), scales.squeeze(2)


INT4_CLIP_RATIOS = [1.0 - 0.025 * i for i in range(13)]     # 1.0 down to 0.7


def _int4_scales(g):
    """Per group (N, G, S) the scale among absmax * ratio / 7 with the least squared error.

    Clipping the few largest weights a little lets the other 15 levels sit closer together;
    on Gaussian-like weights this cuts the int4 error by about a fifth versus plain absmax / 7.
    """
    amax = g.abs().max(axis=2, keepdim=True)
    best_scale, best_err = None, None
    for ratio in INT4_CLIP_RATIOS:
        scale = paddle.clip(amax * ratio / 7.0, min=1e-10)
        err = ((paddle.clip(paddle.round(g / scale), -8, 7) * scale - g) ** 2).sum(axis=2, keepdim=True)
        if best_err is None:
            best_scale, best_err = scale, err
        else:
            better = err < best_err
            best_scale, best_err = paddle.where(better, scale, best_scale), paddle.where(better, err, best_err)
    return best_scale


def dequantize_weight(qweight, scales, algo="weight_only_int8", group_size=128):
    """Inverse of quantize_weight up to rounding: float32 (N, K)."""
    _check_algo(algo, group_size)
    if algo == "weight_only_int8":
        return qweight.astype("float32") * scales.unsqueeze(1)
    b = qweight.astype("int32")
    q = paddle.stack([b % 16, b // 16], axis=2).reshape([b.shape[0], -1]) - 8      # (N, K)
    n, k = q.shape
    g = q.astype("float32").reshape([n, k // group_size, group_size]) * scales.unsqueeze(2)
    return g.reshape([n, k])


def weight_only_linear_ref(x, qweight, scales, bias=None, algo="weight_only_int8", group_size=128):
    """Pure-Paddle reference: dequantize, then an fp32 matmul."""
    w = dequantize_weight(qweight, scales, algo, group_size)
    y = paddle.matmul(x.astype("float32"), w, transpose_y=True)
    return (y if bias is None else y + bias.astype("float32")).astype(x.dtype)


def _check(x, qweight, scales, bias, algo, group_size):
    _check_algo(algo, group_size)
    int8 = algo == "weight_only_int8"
    qs, xs = qweight.shape, x.shape                   # each .shape is a call into Paddle: read once
    n, k = qs[0], qs[1] * (1 if int8 else 2)
    if len(xs) != 2 or xs[1] != k:
        raise ValueError(f"x must be (M, {k}) for this weight; got {xs}")
    if qweight.dtype != (paddle.int8 if int8 else paddle.uint8):
        raise ValueError(f"{algo} needs qweight of dtype {'int8' if int8 else 'uint8'}; got {qweight.dtype}")
    want = [n] if int8 else [n, k // group_size]
    if scales.shape != want or scales.dtype != paddle.float32:
        raise ValueError(f"scales must be float32 {want}; got {scales.dtype} {scales.shape}")
    if bias is not None and bias.shape != [n]:
        raise ValueError(f"bias must be ({n},); got {bias.shape}")
    if x.dtype not in (paddle.float32, paddle.bfloat16):
        raise ValueError(f"x must be float32 or bfloat16; got {x.dtype}")


def weight_only_linear(x, qweight, scales, bias=None, algo="weight_only_int8", group_size=128, exact=None, *,
                       vnni_gemm_rows=None):
    """x (M, K) -> (M, N). Compiled kernel when available, else the reference.

    exact: True keeps the activations in fp32 everywhere (the dequantized math up to summation
    order). False or None (the default) quantize decode activations to int8 for VNNI and let
    prefill compute in bf16 where the CPU has it.
    vnni_gemm_rows: with x quantized (not exact) the prefill GEMM runs from this many rows (None:
    quant_gemm_rows(); exact=True from 16); benchmarks and tests move it to compare both sides at one M.
    """
    if paddle.in_dynamic_mode():                  # to_static: symbolic shapes, the op checks them
        _check(x, qweight, scales, bias, algo, group_size)
    ops = compiled_ops()
    if ops is None:
        return weight_only_linear_ref(x, qweight, scales, bias, algo, group_size)
    bf16_prefill = exact is not True
    exact = bool(exact)                           # None: VNNI decode (module docstring)
    gemm_rows = int(vnni_gemm_rows or quant_gemm_rows())
    # astype copies even to the dtype a tensor has (~13 us a call, 2 of ~40 us per decode GEMV call)
    xf = x if x.dtype == paddle.float32 else x.astype("float32")
    b = bias if bias is None or bias.dtype == paddle.float32 else bias.astype("float32")
    if algo == "weight_only_int8":
        y = ops.pqv_weight_only_int8(xf, qweight, scales, b, exact, bf16_prefill, int8_prefill_tiles(), gemm_rows,
                                     *exec_attrs())
    else:
        y = ops.pqv_weight_only_int4(xf, qweight, scales, b, group_size, exact, bf16_prefill, gemm_rows, *exec_attrs())
    return y if x.dtype == paddle.float32 else y.astype(x.dtype)
