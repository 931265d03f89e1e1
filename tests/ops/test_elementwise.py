"""Fused RMSNorm (+residual), LayerNorm, SwiGLU, quick_gelu and rotary vs their Paddle references."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import compiled_ops
from paddle_qwenvl.ops.activation import quick_gelu, quick_gelu_ref, swiglu, swiglu_ref
from paddle_qwenvl.ops.norm import layer_norm, layer_norm_ref, rms_norm, rms_norm_ref
from paddle_qwenvl.ops.rotary import rotary_qkv, rotary_qkv_ref

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
@pytest.mark.parametrize("shape", [(1, 16), (3, 37), (5, 1280), (2, 4, 100)])
def test_layer_norm_matches_reference(shape):
    """Rows with a large offset (mean 5): the variance is taken around the mean, not E[x^2] - mean^2."""
    x, w, b = t(*shape, scale=3.0) + 5.0, t(shape[-1]), t(shape[-1])
    out = layer_norm(x, w, b, 1e-6)
    np.testing.assert_allclose(out.numpy(), layer_norm_ref(x, w, b, 1e-6).numpy(), rtol=1e-5, atol=1e-5)


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


def cos_sin(tokens, d):
    angles = t(tokens, d // 2, scale=10.0)
    emb = paddle.concat([angles, angles], axis=-1)
    return emb.cos(), emb.sin()


@needs_ops
@pytest.mark.parametrize("tokens,heads,kv_heads,d", [(1, 2, 1, 8), (5, 12, 2, 128), (9, 3, 3, 80), (4, 28, 4, 128)])
def test_rotary_qkv_matches_reference(tokens, heads, kv_heads, d):
    qkv, (cos, sin) = t(tokens, (heads + 2 * kv_heads) * d), cos_sin(tokens, d)
    for out, ref, h in zip(rotary_qkv(qkv, cos, sin, heads, kv_heads), rotary_qkv_ref(qkv, cos, sin, heads, kv_heads),
                           (heads, kv_heads, kv_heads)):
        assert out.shape == [tokens, h, d]
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_rotary_qkv_reference_rotates_q_and_k_and_keeps_v():
    """The reference against the formula on numpy: head h of q is x * cos + [-x2, x1] * sin."""
    qkv, (cos, sin) = t(3, (2 + 2 * 1) * 6), cos_sin(3, 6)
    q, k, v = (x.numpy() for x in rotary_qkv_ref(qkv, cos, sin, 2, 1))
    x, c, s = qkv.numpy(), cos.numpy(), sin.numpy()
    q1 = x[:, 6:12]                                            # query head 1
    np.testing.assert_allclose(q[:, 1], q1 * c + np.concatenate([-q1[:, 3:], q1[:, :3]], 1) * s, rtol=1e-6)
    np.testing.assert_allclose(k[:, 0], x[:, 12:18] * c + np.concatenate([-x[:, 15:18], x[:, 12:15]], 1) * s,
                               rtol=1e-6)
    np.testing.assert_array_equal(v[:, 0], x[:, 18:24])


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
    qkv, cos, sin = t(2, 16).astype("float64"), t(2, 4).astype("float64"), t(2, 4).astype("float64")
    for out, ref in zip(rotary_qkv(qkv, cos, sin, 2, 1), rotary_qkv_ref(qkv, cos, sin, 2, 1)):
        assert out.dtype == paddle.float64
        np.testing.assert_array_equal(out.numpy(), ref.numpy())


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="gate_up"):
        swiglu(t(2, 3))
    with pytest.raises(ValueError, match="w must be"):
        rms_norm(t(2, 4), t(5), 1e-6)
    with pytest.raises(ValueError, match="cos and sin"):
        rotary_qkv(t(2, 12), t(2, 3), t(2, 3), 1, 1)
    with pytest.raises(ValueError, match="num_heads"):
        rotary_qkv(t(2, 14), t(2, 4), t(2, 4), 2, 1)            # 14 is not (2 + 2) * head_dim
