"""block_attention (vision towers: non-causal attention within blocks of the token axis): the
compiled paths, the paged attention kernel, the oneDNN GEMMs (fp32 and bf16) and the fused AMX
kernel (bf16), vs block_attention_ref (test_kernel_switches.py reruns these on the portable
kernels and on 3 threads)."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.ops.block_attention import (block_attention, block_attention_gemm, block_attention_paged,
                                               block_attention_ref)

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")
needs_onednn = pytest.mark.skipif(not build_info()["onednn"], reason="built without oneDNN headers")
needs_bf16 = pytest.mark.skipif(not build_info()["bf16"], reason="no native bf16 on this CPU (or portable kernels)")
needs_amx = pytest.mark.skipif(not (build_info()["amx"] and build_info()["onednn"]), reason="no AMX on this CPU")
AMX_SWITCH = "PADDLE_QWENVL_AMX_ATTENTION"

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


def check_against_reference(attend, cu, h, d):
    q, k, v = _qkv(cu[-1], h, d)
    out = attend(q, k, v, cu, d ** -0.5)
    ref = block_attention_ref(q, k, v, cu, d ** -0.5)
    assert out.shape == [cu[-1], h, d]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=2e-5)


@needs_ops
@pytest.mark.parametrize("cu,h,d", CASES)
def test_paged_kernel_matches_reference(cu, h, d):
    check_against_reference(block_attention_paged, cu, h, d)


@needs_onednn
@pytest.mark.parametrize("cu,h,d", CASES + [([0, 700, 1400], 2, 80)])    # 700: row chunks overlap at the end
def test_gemm_path_fp32_matches_reference(cu, h, d):
    check_against_reference(block_attention_gemm, cu, h, d)


def _bf16(t):
    return t.astype("bfloat16").astype("float32")


@needs_bf16
@needs_onednn
@pytest.mark.parametrize("amx", ["1", "0"], ids=["amx-if-present", "onednn"])
@pytest.mark.parametrize("cu,h,d", CASES + [([0, 700, 1400], 2, 80)])
def test_gemm_path_bf16_matches_reference_on_rounded_inputs(cu, h, d, amx, monkeypatch):
    """bf16: q, k, v rounded to bf16 as the GEMMs see them; what is left is the bf16 rounding of the
    softmax numerators (relative 2^-9 each), which stays within 1e-2 of outputs of size ~1. The
    fp32 path's result must differ (the bf16 GEMMs really ran). Both bf16 paths: the fused AMX
    kernel (D a multiple of 16 up to 80, on a CPU with AMX) and the oneDNN GEMMs."""
    monkeypatch.setenv(AMX_SWITCH, amx)
    q, k, v = _qkv(cu[-1], h, d)
    out = block_attention_gemm(q, k, v, cu, d ** -0.5, bf16=True).numpy()
    ref = block_attention_ref(_bf16(q), _bf16(k), _bf16(v), cu, d ** -0.5).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-2, atol=1e-2)
    assert np.abs(out - block_attention_ref(q, k, v, cu, d ** -0.5).numpy()).max() > 1e-4


@needs_ops
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cu", [[0, 300, 600], [0, 64, 128]])
def test_dispatch_matches_reference(cu, compute_dtype):
    """block_attention itself: long blocks (the GEMM path where oneDNN is built) and windows."""
    q, k, v = _qkv(cu[-1], 4, 32)
    out = block_attention(q, k, v, cu, 32 ** -0.5, compute_dtype).numpy()
    tol = 1e-2 if compute_dtype == "bfloat16" else 2e-5
    np.testing.assert_allclose(out, block_attention_ref(q, k, v, cu, 32 ** -0.5).numpy(), rtol=tol, atol=tol)


def _gemm_fp32(q, k, v, cu, scale):
    return block_attention_gemm(q, k, v, cu, scale)


@needs_ops
@pytest.mark.parametrize("attend", [block_attention_paged, pytest.param(_gemm_fp32, marks=needs_onednn)])
def test_blocks_do_not_see_each_other(attend):
    """Changing the second block's keys leaves the first block's output bit for bit."""
    q, k, v = _qkv(96, 2, 32)
    first = attend(q, k, v, [0, 40, 96], 32 ** -0.5)[:40].numpy()
    k2 = paddle.concat([k[:40], k[40:] * 3.0])
    again = attend(q, k2, v, [0, 40, 96], 32 ** -0.5)
    np.testing.assert_array_equal(again[:40].numpy(), first)
    assert not np.allclose(again[40:].numpy(), attend(q, k, v, [0, 40, 96], 32 ** -0.5)[40:].numpy())


@needs_amx
@pytest.mark.parametrize("cu,h,d,amp", [
    ([0, 100, 700, 1300, 1301], 2, 80, 6.0),    # several blocks, a 1-token one; padded rows and keys
    ([0, 2000], 2, 64, 10.0),                   # 63 key blocks, the last with 16 keys
    ([0, 999], 3, 16, 20.0),                    # one 16-column output tile; 7 keys in the last block
])
def test_amx_kernel_on_peaked_rows(cu, h, d, amp, monkeypatch):
    """Large, growing scores (a row's max rises block after block, so its output and sum are
    rescaled again and again): the AMX kernel is as close to the reference on bf16-rounded inputs
    as the oneDNN GEMMs (both: the numerators' bf16 rounding), and is not them."""
    n = cu[-1]
    q, k, v = _qkv(n, h, d)
    q = q * amp * paddle.linspace(0.1, 1.0, n).reshape([n, 1, 1])
    ref = block_attention_ref(_bf16(q), _bf16(k), _bf16(v), cu, d ** -0.5).numpy()
    outs = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(AMX_SWITCH, switch)
        outs[switch] = block_attention_gemm(q, k, v, cu, d ** -0.5, bf16=True).numpy()
    err_amx, err_onednn = (np.abs(outs[s] - ref).max() for s in ("1", "0"))
    assert err_amx < 1e-2 and err_amx < 1.5 * err_onednn + 1e-3
    assert not np.array_equal(outs["1"], outs["0"])


@needs_amx
def test_amx_blocks_do_not_see_each_other(monkeypatch):
    monkeypatch.setenv(AMX_SWITCH, "1")
    q, k, v = _qkv(200, 2, 80)
    first = block_attention_gemm(q, k, v, [0, 77, 200], 80 ** -0.5, bf16=True)[:77].numpy()
    v2 = paddle.concat([v[:77], v[77:] * 3.0])
    np.testing.assert_array_equal(block_attention_gemm(q, k, v2, [0, 77, 200], 80 ** -0.5, bf16=True)[:77].numpy(),
                                  first)


def test_unknown_compute_dtype_is_rejected():
    q, k, v = _qkv(10, 2, 16)
    with pytest.raises(ValueError, match="compute_dtype"):
        block_attention(q, k, v, [0, 10], 0.25, "float16")


def test_bad_cu_seqlens_raise_clear_errors():
    q, k, v = _qkv(10, 2, 16)
    for bad in ([0, 9], [1, 10], [0, 6, 4, 10], []):
        with pytest.raises(ValueError, match="cu_seqlens"):
            block_attention(q, k, v, bad, 0.25)


@needs_ops
def test_paged_path_leaves_k_and_v_unchanged():
    """The paged path reads k and v as their own cache (no slot written): they come back as given."""
    q, k, v = _qkv(200, 2, 32)
    k0, v0 = k.numpy().copy(), v.numpy().copy()
    block_attention_paged(q, k, v, [0, 64, 128, 200], 32 ** -0.5)
    np.testing.assert_array_equal(k.numpy(), k0)
    np.testing.assert_array_equal(v.numpy(), v0)
