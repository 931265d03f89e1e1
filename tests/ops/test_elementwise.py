"""Fused RMSNorm (+residual), SwiGLU, quick_gelu and rotary vs their Paddle references."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import compiled_ops
from paddle_qwenvl.ops.activation import quick_gelu, quick_gelu_ref, swiglu, swiglu_ref
from paddle_qwenvl.ops.norm import rms_norm, rms_norm_ref
from paddle_qwenvl.ops.rotary import apply_rotary, apply_rotary_ref

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")
rng = np.random.default_rng(0)


def t(*shape, scale=1.0):
    return paddle.to_tensor((rng.standard_normal(shape) * scale).astype("float32"))


@needs_ops
@pytest.mark.parametrize("shape", [(1, 16), (3, 37), (5, 1536), (2, 4, 100)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_reference(shape, with_residual):
    x, w = t(*shape, scale=3.0), t(shape[-1])
    res = t(*shape) if with_residual else None
    out, new_res = rms_norm(x, w, 1e-6, res)
    ref_out, ref_res = rms_norm_ref(x, w, 1e-6, res)
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(new_res.numpy(), ref_res.numpy())


@needs_ops
@pytest.mark.parametrize("m,i", [(1, 8), (3, 17), (7, 8960)])
def test_swiglu_matches_reference(m, i):
    gate_up = t(m, 2 * i, scale=4.0)                # wide range: exp overflow/underflow paths
    np.testing.assert_allclose(swiglu(gate_up).numpy(), swiglu_ref(gate_up).numpy(), rtol=1e-5, atol=1e-5)


@needs_ops
@pytest.mark.parametrize("shape", [(7,), (3, 17), (40, 5120), (2, 3, 1001)])   # 40x5120: 13 work pieces
def test_quick_gelu_matches_reference(shape):
    x = t(*shape, scale=6.0)                        # wide range: exp overflow/underflow paths
    np.testing.assert_allclose(quick_gelu(x).numpy(), quick_gelu_ref(x).numpy(), rtol=1e-5, atol=1e-6)


@needs_ops
@pytest.mark.parametrize("tokens,heads,d", [(1, 2, 8), (5, 12, 128), (9, 3, 80)])
def test_rotary_matches_reference(tokens, heads, d):
    x = t(tokens, heads, d)
    angles = t(tokens, d // 2, scale=10.0)
    emb = paddle.concat([angles, angles], axis=-1)
    cos, sin = emb.cos(), emb.sin()
    np.testing.assert_allclose(apply_rotary(x, cos, sin).numpy(), apply_rotary_ref(x, cos, sin).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_other_dtypes_run_the_references():
    """float64 (no compiled kernel) goes through the references and keeps its dtype."""
    x, res, w = (a.astype("float64") for a in (t(3, 8), t(3, 8), t(8)))
    out, new_res = rms_norm(x, w, 1e-6, res)
    assert out.dtype == new_res.dtype == paddle.float64
    np.testing.assert_array_equal(out.numpy(), rms_norm_ref(x, w, 1e-6, res)[0].numpy())
    gate_up = t(2, 8).astype("float64")
    assert swiglu(gate_up).dtype == paddle.float64
    np.testing.assert_array_equal(swiglu(gate_up).numpy(), swiglu_ref(gate_up).numpy())
    np.testing.assert_array_equal(quick_gelu(gate_up).numpy(), quick_gelu_ref(gate_up).numpy())
    q, cos, sin = t(2, 3, 4).astype("float64"), t(2, 4).astype("float64"), t(2, 4).astype("float64")
    np.testing.assert_array_equal(apply_rotary(q, cos, sin).numpy(), apply_rotary_ref(q, cos, sin).numpy())


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="gate_up"):
        swiglu(t(2, 3))
    with pytest.raises(ValueError, match="w must be"):
        rms_norm(t(2, 4), t(5), 1e-6)
    with pytest.raises(ValueError, match="cos/sin"):
        apply_rotary(t(2, 1, 4), t(2, 3), t(2, 3))
