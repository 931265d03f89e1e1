"""Weight-only int8/int4 linear: compiled kernels vs the dequantized-math reference."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.ops import _build
from paddle_qwenvl.ops.weight_only_linear import (EVERY_ROW_ON_VNNI, VNNI_GEMM_ROWS, dequantize_weight,
                                                  quant_gemm_rows, quantize_weight, quantize_weight_ref,
                                                  weight_only_linear, weight_only_linear_ref)

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")
SHAPES = [(1, 37, 256), (1, 130, 2048), (3, 9, 384), (5, 130, 128), (4, 64, 640), (7, 33, 1152),
          (16, 300, 256), (40, 513, 640), (80, 129, 256)]
# rows for the register-blocked VNNI kernels: panels of 32 weight rows, a group of 16, and rows
# left over (odd N); x rows in groups of 6 and every remainder; K a multiple of 128 (int4 groups)
ROWS = [(2, 37, 256), (5, 53, 384), (8, 33, 128), (15, 129, 128), (16, 161, 640), (17, 53, 128),
        (33, 100, 1152), (64, 517, 256)]
CASES = [("weight_only_int8", 128), ("weight_only_int4", 64), ("weight_only_int4", 128)]


def _cases(shapes, keep):
    return [(a, g, *s) for a, g in CASES for s in shapes if keep(s[0])]


def _data(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    w = paddle.to_tensor(rng.standard_normal((n, k)).astype("float32") * 0.05)
    x = paddle.to_tensor(rng.standard_normal((m, k)).astype("float32"))
    b = paddle.to_tensor(rng.standard_normal(n).astype("float32"))
    return x, w, b


def _int8_activation_bound(x, w_deq, group):
    """sum_k |w_k| * blockmax|x| / 254 per (m, n): the VNNI path's worst-case deviation."""
    xa = np.abs(x.numpy()).reshape(x.shape[0], -1, group).max(axis=2)               # (M, B)
    wa = np.abs(w_deq.numpy()).reshape(w_deq.shape[0], -1, group).sum(axis=2)      # (N, B)
    return xa @ wa.T / 254.0 + 1e-4


@pytest.mark.parametrize("algo,group", CASES)
def test_quantize_roundtrip_error_is_within_half_a_step(algo, group):
    _, w, _ = _data(1, 70, 256)
    q, s = quantize_weight(w, algo, group)
    err = (dequantize_weight(q, s, algo, group) - w).abs().numpy()
    step = np.repeat(s.numpy()[:, None], 256, 1) if algo == "weight_only_int8" else np.repeat(s.numpy(), group, 1)
    # int4 scales may clip the largest weights (to -8 / 7 steps); every weight inside that range
    # is within half a step, and the clipping never costs more squared error than absmax / 7
    w = w.numpy()
    inside = (w >= -8 * step) & (w <= 7 * step) if algo == "weight_only_int4" else np.ones_like(w, bool)
    assert (err[inside] <= step[inside] / 2 + 1e-6).all()
    if algo == "weight_only_int4":
        absmax_step = np.repeat(np.abs(w.reshape(70, -1, group)).max(-1) / 7, group, axis=1)
        plain = np.clip(np.round(w / absmax_step), -8, 7) * absmax_step - w
        assert (err ** 2).sum() <= (plain ** 2).sum() + 1e-6


@needs_ops
def test_compiled_int8_quantizer_equals_the_reference():
    """Bit for bit, ties included: a row with absmax 127 has scale 1, so x.5 values land on ties
    (rounded half to even, as paddle.round); an all-zero row gets the 1e-10 floor."""
    ties = [127.0, 2.5, -2.5, 3.5, 0.5, -0.5, 126.5, -127.0] + [0.0] * 56
    w = paddle.concat([paddle.to_tensor([ties, [0.0] * 64]), _data(1, 300, 64)[1] * 37])
    q, s = quantize_weight(w, "weight_only_int8")
    q_ref, s_ref = quantize_weight_ref(w, "weight_only_int8")
    np.testing.assert_array_equal(q.numpy(), q_ref.numpy())
    np.testing.assert_array_equal(s.numpy(), s_ref.numpy())
    assert q.numpy()[0, :8].tolist() == [127, 2, -2, 4, 0, 0, 126, -127]


def test_int4_packing_puts_even_k_in_the_low_nibble():
    w = paddle.to_tensor([[7.0, -3.0] + [0.0] * 62])
    q, s = quantize_weight(w, "weight_only_int4", 64)
    assert float(s[0, 0]) == pytest.approx(1.0)
    assert int(q[0, 0]) == (7 + 8) + 16 * (-3 + 8)      # stored as q + 8: low = k0, high = k1
    assert int(q[0, 1]) == 8 + 16 * 8


@needs_ops
@pytest.mark.parametrize("algo,group", CASES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_exact_path_matches_dequantized_math(algo, group, m, n, k):
    x, w, b = _data(m, n, k)
    q, s = quantize_weight(w, algo, group)
    ref = weight_only_linear_ref(x, q, s, b, algo, group).numpy()
    out = weight_only_linear(x, q, s, b, algo, group, exact=True).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@needs_ops
@pytest.mark.parametrize("algo,group,m,n,k", _cases(SHAPES + ROWS, lambda m: True))
@pytest.mark.parametrize("exact", [False, None])            # None: the default takes this path
def test_vnni_path_is_within_the_int8_activation_bound(algo, group, m, n, k, exact):
    """Below VNNI_GEMM_ROWS the default path; from there as QUANT_PREFILL=vnni runs it."""
    x, w, b = _data(m, n, k)
    q, s = quantize_weight(w, algo, group)
    ref = weight_only_linear_ref(x, q, s, b, algo, group).numpy()
    rows = EVERY_ROW_ON_VNNI if m >= VNNI_GEMM_ROWS else None
    out = weight_only_linear(x, q, s, b, algo, group, exact=exact, vnni_gemm_rows=rows).numpy()
    block = 64 if algo == "weight_only_int8" else group
    bound = _int8_activation_bound(x, dequantize_weight(q, s, algo, group), block)
    assert (np.abs(out - ref) <= bound).all()
    assert np.abs(out - ref).max() > 0          # it really took the int8-activation path


def _bf16_bound(x, w_deq, algo):
    """The bf16 prefill's worst case: each product x_k * w_k off by at most a factor 2**-8 (int8:
    x rounded to bf16, q exact) or about 2**-7 (int4: x and q * scale both rounded)."""
    u = 2.0 ** -8 if algo == "weight_only_int8" else 2.0 ** -7 + 2.0 ** -16
    return np.abs(x.numpy()) @ np.abs(w_deq.numpy()).T * u + 1e-4


@needs_ops
@pytest.mark.parametrize("algo,group,m,n,k", _cases(ROWS, lambda m: m > 1))
def test_vnni_path_gives_rows_together_what_it_gives_rows_one_at_a_time(algo, group, m, n, k):
    """x is quantized row by row, so M rows at once (the register-blocked kernels from 8 rows)
    compute what M single-row calls (the row kernels) do, up to the order of the fp32 sums."""
    x, w, b = _data(m, n, k, seed=m)
    q, s = quantize_weight(w, algo, group)
    together = weight_only_linear(x, q, s, b, algo, group, exact=False).numpy()
    alone = np.concatenate([weight_only_linear(x[i:i + 1], q, s, b, algo, group, exact=False).numpy()
                            for i in range(m)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not build_info()["onednn"], reason="prefill GEMM needs oneDNN")
@pytest.mark.parametrize("algo,group,m,n,k,gemm_rows",
                         [c + (VNNI_GEMM_ROWS,) for c in _cases(SHAPES, lambda m: m >= VNNI_GEMM_ROWS)] +
                         [c + (16,) for c in _cases(SHAPES + ROWS, lambda m: 16 <= m < VNNI_GEMM_ROWS)])
def test_default_prefill_is_within_the_bf16_bound(algo, group, m, n, k, gemm_rows):
    """gemm_rows=16: rows below VNNI_GEMM_ROWS take the GEMM when asked to (the old rule)."""
    x, w, b = _data(m, n, k)
    q, s = quantize_weight(w, algo, group)
    ref = weight_only_linear_ref(x, q, s, b, algo, group).numpy()
    out = weight_only_linear(x, q, s, b, algo, group, vnni_gemm_rows=gemm_rows).numpy()
    assert (np.abs(out - ref) <= _bf16_bound(x, dequantize_weight(q, s, algo, group), algo)).all()
    if build_info()["bf16"]:
        assert np.abs(out - ref).max() > 1e-3            # it really computed in bf16
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("value,amx,rows", [("vnni", True, EVERY_ROW_ON_VNNI), ("bf16", False, VNNI_GEMM_ROWS),
                                            ("auto", True, VNNI_GEMM_ROWS), ("auto", False, EVERY_ROW_ON_VNNI)])
def test_quant_prefill_setting_picks_the_prompt_path(monkeypatch, value, amx, rows):
    """PADDLE_QWENVL_QUANT_PREFILL: prompts on VNNI (activations quantized) or from VNNI_GEMM_ROWS rows
    on oneDNN's bf16 GEMM; 'auto' takes the GEMM only where the CPU has AMX."""
    monkeypatch.setenv("PADDLE_QWENVL_QUANT_PREFILL", value)
    monkeypatch.setattr(_build, "build_info", lambda: dict(build_info(), amx=amx))
    _build._process_choices.cache_clear()
    try:
        assert quant_gemm_rows() == rows
    finally:
        _build._process_choices.cache_clear()


def test_a_bad_quant_prefill_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_QUANT_PREFILL", "int8")
    _build._process_choices.cache_clear()
    try:
        with pytest.raises(ValueError, match="PADDLE_QWENVL_QUANT_PREFILL"):
            quant_gemm_rows()
    finally:
        monkeypatch.delenv("PADDLE_QWENVL_QUANT_PREFILL")
        _build._process_choices.cache_clear()


@needs_ops
def test_bf16_activations_return_bf16():
    x, w, b = _data(2, 40, 256)
    q, s = quantize_weight(w)
    out = weight_only_linear(x.astype("bfloat16"), q, s, b)
    ref = weight_only_linear_ref(x.astype("bfloat16").astype("float32"), q, s, b)
    assert out.dtype == paddle.bfloat16
    np.testing.assert_allclose(out.astype("float32").numpy(), ref.numpy(), rtol=1e-2, atol=1e-2)


def test_bad_inputs_raise_clear_errors():
    x, w, _ = _data(2, 8, 128)
    q, s = quantize_weight(w)
    with pytest.raises(ValueError, match="x must be"):
        weight_only_linear(x[:, :64], q, s)
    with pytest.raises(ValueError, match="group_size"):
        quantize_weight(w, "weight_only_int4", 32)
    with pytest.raises(ValueError, match="algo"):
        weight_only_linear(x, q, s, algo="int3")
