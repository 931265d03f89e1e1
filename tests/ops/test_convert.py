"""bf16_to_float32 (checkpoint loading) against Paddle's cast: exact, every bf16 bit pattern."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import compiled_ops
from paddle_qwenvl.ops.convert import bf16_to_float32, bf16_to_float32_ref

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")


@needs_ops
def test_every_bf16_value_converts_exactly():
    """All 65536 patterns (zeros, subnormals, inf, NaNs), repeated into a (4, 147459) block that
    spans several 2**18-element work pieces, bit for bit as paddle's cast."""
    bits = np.tile(np.arange(1 << 16, dtype=np.uint16), 10)[: 4 * 147459].reshape(4, 147459)
    x = paddle.to_tensor(bits.view(np.int16)).view(paddle.bfloat16)
    out, ref = bf16_to_float32(x), bf16_to_float32_ref(x)
    assert out.dtype == paddle.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out.numpy().view(np.uint32), ref.numpy().view(np.uint32))


@needs_ops
def test_empty_and_wrong_dtype():
    assert bf16_to_float32(paddle.zeros([0, 3], dtype="bfloat16")).shape == [0, 3]
    with pytest.raises(ValueError, match="bfloat16"):
        bf16_to_float32(paddle.zeros([2], dtype="float32"))


@needs_ops
def test_parts_join_along_axis_0_as_they_convert():
    rng = np.random.default_rng(0)
    parts = [paddle.to_tensor(rng.standard_normal((r, 300)).astype("float32")).astype("bfloat16")
             for r in (700, 0, 1, 1100)]              # 2**18-element pieces straddle the parts; an empty one
    out = bf16_to_float32(parts)
    ref = paddle.concat(parts, axis=0).astype("float32")
    assert out.shape == [1801, 300]
    np.testing.assert_array_equal(out.numpy().view(np.uint32), ref.numpy().view(np.uint32))
    with pytest.raises(ValueError, match="other dims must agree"):
        bf16_to_float32([parts[0], paddle.zeros([2, 7], dtype="bfloat16")])
