"""block_attention (vision towers: non-causal attention within blocks of the token axis) on the
paged attention kernel vs block_attention_ref (test_kernel_switches.py reruns these on the
portable kernels)."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import compiled_ops
from paddle_qwenvl.ops.block_attention import block_attention, block_attention_ref

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")

CASES = [  # cu_seqlens, H, D
    ([0, 300], 16, 80),                     # one frame, Qwen2-VL's 16 heads x 80
    ([0, 64, 128, 192, 256], 16, 80),       # equal windows (Qwen2.5-VL's windowed layers)
    ([0, 64, 100, 100, 164, 171], 4, 64),   # unequal windows, an empty one, a 7-token one
    ([0, 1, 2], 2, 16),                     # single-token blocks
    ([0, 77, 130], 3, 72),                  # D not a multiple of 16: the portable tile kernels
]


def _qkv(n, h, d, seed=0):
    """q, k, v as the vision layer makes them: v straight out of an unbind of the fused qkv."""
    rng = np.random.default_rng(seed)
    qkv = paddle.to_tensor(rng.standard_normal((n, 3 * h * d)).astype("float32"))
    return qkv.reshape([n, 3, h, d]).unbind(axis=1)


def check_against_reference(cu, h, d):
    q, k, v = _qkv(cu[-1], h, d)
    out = block_attention(q, k, v, cu, d ** -0.5)
    ref = block_attention_ref(q, k, v, cu, d ** -0.5)
    assert out.shape == [cu[-1], h, d]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=2e-5)


@needs_ops
@pytest.mark.parametrize("cu,h,d", CASES)
def test_kernel_matches_reference(cu, h, d):
    check_against_reference(cu, h, d)


@needs_ops
def test_blocks_do_not_see_each_other():
    """Changing the second block's keys leaves the first block's output bit for bit."""
    q, k, v = _qkv(96, 2, 32)
    first = block_attention(q, k, v, [0, 40, 96], 32 ** -0.5)[:40].numpy()
    k2 = paddle.concat([k[:40], k[40:] * 3.0])
    again = block_attention(q, k2, v, [0, 40, 96], 32 ** -0.5)
    np.testing.assert_array_equal(again[:40].numpy(), first)
    assert not np.allclose(again[40:].numpy(), block_attention(q, k, v, [0, 40, 96], 32 ** -0.5)[40:].numpy())


def test_bad_cu_seqlens_raise_clear_errors():
    q, k, v = _qkv(10, 2, 16)
    for bad in ([0, 9], [1, 10], [0, 6, 4, 10], []):
        with pytest.raises(ValueError, match="cu_seqlens"):
            block_attention(q, k, v, bad, 0.25)
