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
