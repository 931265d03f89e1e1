"""The vision attention layer attends in the model's float weight dtype: bf16 models run long
blocks through the bf16 GEMMs, fp32 models stay fp32."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.config import Precision
from paddle_qwenvl.models.vision import VisionAttention
from paddle_qwenvl.ops._build import build_info

DIM, HEADS = 128, 4


def _layer(dtype):
    paddle.seed(0)
    return VisionAttention(DIM, HEADS, precision=Precision(dtype))


def _inputs(n):
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((n, DIM)).astype("float32"))
    angles = paddle.to_tensor(rng.uniform(0, 6, (n, DIM // HEADS)).astype("float32"))
    return x, paddle.cos(angles), paddle.sin(angles)


def test_layer_takes_the_weight_dtype_as_its_attention_dtype():
    assert _layer("float32").compute_dtype == "float32"
    assert _layer("bfloat16").compute_dtype == "bfloat16"


@pytest.mark.skipif(not (build_info()["bf16"] and build_info()["onednn"]), reason="needs native bf16 and oneDNN")
def test_bf16_layer_attends_in_bf16_on_long_blocks():
    """Same bf16 weights, attention in bf16 vs forced to fp32: close (bf16 rounding of q, k, v and
    the softmax numerators) but not equal."""
    layer = _layer("bfloat16")
    x, cos, sin = _inputs(600)
    out_bf16 = layer(x, cos, sin, [0, 300, 600]).numpy()
    layer.compute_dtype = "float32"
    out_fp32 = layer(x, cos, sin, [0, 300, 600]).numpy()
    scale = np.abs(out_fp32).max()
    assert 1e-5 * scale < np.abs(out_bf16 - out_fp32).max() < 2e-2 * scale
