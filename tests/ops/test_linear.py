"""Dense linear (oneDNN GEMM; our GEMV below 16 rows, our vdpbf16ps kernel below 36 in bf16 math)
vs the paddle.matmul reference."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops import threads
from paddle_qwenvl.ops._build import build_info
from paddle_qwenvl.ops.linear import linear, linear_ref

needs_onednn = pytest.mark.skipif(not build_info()["onednn"], reason="built without oneDNN")
# below 16 rows the decode GEMV: K tails (5, 70, 130), 4-row blocks (4, 15), rows over 2 threads
SHAPES = [(1, 7, 5), (3, 33, 70), (4, 50, 130), (15, 20, 64), (2, 1100, 512),
          (17, 130, 256), (64, 257, 1000), (130, 96, 128)]
# bf16 math below 36 rows: 4-row x groups and their rest (5, 33, 35), K tails under 32 (33, 70),
# fewer weight rows than one four-stream block (3), a long K (2000); 36 rows: oneDNN again
BF16_SHAPES = [(5, 3, 33), (16, 37, 100), (33, 130, 70), (35, 21, 2000), (36, 64, 96)]


def _data(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    x = paddle.to_tensor(rng.standard_normal((m, k)).astype("float32"))
    w = paddle.to_tensor((rng.standard_normal((n, k)) / np.sqrt(k)).astype("float32"))
    b = paddle.to_tensor(rng.standard_normal(n).astype("float32"))
    return x, w, b


@needs_onednn
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_fp32_matches_reference(m, n, k):
    x, w, b = _data(m, n, k)
    np.testing.assert_allclose(linear(x, w, b).numpy(), linear_ref(x, w, b).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(linear(x, w).numpy(), linear_ref(x, w).numpy(), rtol=1e-4, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("m,n,k", SHAPES + BF16_SHAPES)
def test_bf16_weights_match_bf16_rounded_math(m, n, k):
    x, w, b = _data(m, n, k)
    wb = w.astype("bfloat16")
    # reference: x rounded to bf16, exact products, fp32 sums
    ref = linear_ref(x.astype("bfloat16").astype("float32"), wb.astype("float32"), b).numpy()
    out = linear(x, wb, b)
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-3, atol=1e-3)
    if m >= 16:            # oneDNN's GEMM at the same row count: within the same bound
        np.testing.assert_allclose(linear(x, wb, b, bf16_gemm_rows=16).numpy(), ref, rtol=1e-3, atol=1e-3)


@needs_onednn
@pytest.mark.parametrize("m,n,k", SHAPES + [(16, 1500, 700)])    # the last: more than one 2 MB tile
def test_exact_bf16_weights_give_the_fp32_result_of_the_widened_weights(m, n, k):
    """exact=True (a float32 model holding bf16 checkpoint weights): fp32 math on the widened
    weights, as the fp32 op on them gives (the GEMV widens as it reads, prefill goes through tiles
    of the widened weights into oneDNN's fp32 GEMM). Equal up to summation order (the GEMV's thread
    split follows the bytes), and far closer than with x rounded to bf16."""
    x, w, b = _data(m, n, k)
    wb = w.astype("bfloat16")
    fp32 = linear(x, wb.astype("float32"), b).numpy()
    out = linear(x, wb, b, exact=True)
    assert out.dtype == paddle.float32
    exact_err = np.abs(out.numpy() - fp32).max()
    assert exact_err <= 1e-5 * max(1.0, np.abs(fp32).max())
    assert np.abs(linear(x, wb, b).numpy() - fp32).max() > 10 * max(exact_err, 1e-7)
    np.testing.assert_allclose(linear(x, wb, exact=True).numpy(), linear(x, wb.astype("float32")).numpy(),
                               rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("m", [1, 3, 16, 40])
def test_exact_bf16_weights_are_bit_for_bit_fp32_at_one_thread(m, monkeypatch):
    """With one thread both dtypes split the rows alike: the same bits."""
    monkeypatch.setattr(threads, "_chosen", [1])
    x, w, b = _data(m, 1100, 512)
    wb = w.astype("bfloat16")
    np.testing.assert_array_equal(linear(x, wb, b, exact=True).numpy(), linear(x, wb.astype("float32"), b).numpy())


@needs_onednn
def test_bf16_activations_give_bf16_for_either_weight_dtype():
    x, w, b = _data(9, 40, 96)
    xb = x.astype("bfloat16")
    for weight in (w, w.astype("bfloat16")):
        out = linear(xb, weight, b)
        assert out.dtype == paddle.bfloat16
        ref = linear_ref(xb, weight, b).astype("float32").numpy()
        np.testing.assert_allclose(out.astype("float32").numpy(), ref, rtol=2e-2, atol=2e-2)


def test_shape_mismatch_raises():
    x, w, _ = _data(2, 4, 8)
    with pytest.raises(ValueError, match=r"x must be \(M, K\)"):
        linear(x, w[:, :4])
    with pytest.raises(ValueError, match="bias must be"):
        linear(x, w, paddle.zeros([5]))
