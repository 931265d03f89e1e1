"""Linear layers with HF weight layout (out_features, in_features): y = x @ W^T + b.

`Linear` holds float32 or bfloat16 weights, as its `Precision` says; `WeightOnlyLinear` holds int8 /
int4 weights quantized as they are loaded (`load_weight`), so the float32 matrix never lives in the model.
"""
import dataclasses

import paddle
import paddle.nn as nn
from paddle.nn.initializer.lazy_init import lazy_init_helper

from ..config import Precision
from ..ops.linear import linear
from ..ops.weight_only_linear import quantize_weight, weight_only_linear

_INIT = nn.initializer.Normal(mean=0.0, std=0.02)
FLOAT32 = Precision()


def make_embedding(num_embeddings: int, dim: int, precision: Precision = FLOAT32) -> nn.Embedding:
    """nn.Embedding whose table is in precision.weights (lookups return that dtype too)."""
    saved = paddle.get_default_dtype()
    paddle.set_default_dtype(precision.weights)
    try:
        return nn.Embedding(num_embeddings, dim)
    finally:
        paddle.set_default_dtype(saved)


def on_rows(fn, x, out_features: int):
    """fn(rows (M, in)) -> (M, out) applied to x (..., in), returning (..., out). A 2-D x (every
    decoder linear) goes straight through: a reshape is one more Paddle call (~4 us here), and
    Python-side calls are a good part of a decode step."""
    if x.ndim == 2:
        return fn(x)
    shape = x.shape
    return fn(x.reshape([-1, shape[-1]])).reshape(shape[:-1] + [out_features])


class Linear(nn.Layer):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, precision: Precision = FLOAT32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = self.create_parameter([out_features, in_features], dtype=precision.weights,
                                            default_initializer=_INIT)
        self.bias = self.create_parameter([out_features], is_bias=True) if bias else None
        self.exact = precision.compute == "float32"      # bf16 weights in a float32 model: fp32 math

    def forward(self, x):
        return on_rows(lambda rows: linear(rows, self.weight, self.bias, self.exact), x, self.out_features)

    def op_weights(self):
        """(weight, scales or None) as ops.decoder_layer takes them."""
        return self.weight, None


def _buffer(shape, dtype: str, fill):
    """Left unwritten inside paddle.LazyGuard, where load_model builds the model to load over it
    (every buffer is then replaced or reported missing; zero-filling the int8 weights of a 2B model
    took ~1 s); else filled with `fill`."""
    if lazy_init_helper().state:
        return paddle.empty(shape, dtype)
    return paddle.full(shape, fill, dtype)


class WeightOnlyLinear(nn.Layer):
    """Buffers `qweight` and `scales` in the layouts of `ops.weight_only_linear`."""

    def __init__(self, in_features: int, out_features: int, bias: bool, quant):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.algo, self.group_size = quant.quant_type, quant.group_size
        int8 = self.algo == "weight_only_int8"
        qshape = [out_features, in_features if int8 else in_features // 2]
        sshape = [out_features] if int8 else [out_features, in_features // quant.group_size]
        self.register_buffer("qweight", _buffer(qshape, "int8" if int8 else "uint8", 0))
        self.register_buffer("scales", _buffer(sshape, "float32", 1))
        self.bias = self.create_parameter([out_features], is_bias=True) if bias else None
        self.row_absmax = None      # set on a row-parallel rank's slice: weight -> whole rows' max |w| (out, 1)

    def load_weight(self, weight):
        """Quantize a float (out, in) weight into this layer's buffers. With `row_absmax` (int8), each
        row is scaled as its whole row is (layers/parallel.py): the row's max |w| rides along as one
        more column, quantized and dropped."""
        if list(weight.shape) != [self.out_features, self.in_features]:
            raise ValueError(f"weight of shape {list(weight.shape)} given, expected "
                             f"{[self.out_features, self.in_features]}")
        if self.row_absmax is None or self.algo != "weight_only_int8":
            self.qweight, self.scales = quantize_weight(weight, self.algo, self.group_size)
            return
        weight = weight.astype("float32")
        qweight, self.scales = quantize_weight(paddle.concat([weight, self.row_absmax(weight)], axis=1), self.algo)
        self.qweight = qweight[:, :-1].contiguous()

    def forward(self, x):
        return on_rows(lambda rows: weight_only_linear(rows, self.qweight, self.scales, self.bias, self.algo,
                                                       self.group_size), x, self.out_features)

    def op_weights(self):
        """(qweight, scales) as ops.decoder_layer takes them."""
        return self.qweight, self.scales


def make_linear(in_features: int, out_features: int, bias: bool = True, quant=None,
                precision: Precision = FLOAT32) -> nn.Layer:
    """A float Linear in `precision`, or a WeightOnlyLinear when `quant` (a QuantConfig) is given.

    int4 needs in_features to be a multiple of the group size; layers where it is not (e.g.
    Qwen2.5-VL's vision MLP, 3420 wide) are quantized to int8 instead.
    """
    if quant is None:
        return Linear(in_features, out_features, bias, precision)
    if quant.quant_type == "weight_only_int4" and in_features % quant.group_size:
        quant = dataclasses.replace(quant, quant_type="weight_only_int8")
    return WeightOnlyLinear(in_features, out_features, bias, quant)


def linear_macs(layer: nn.Layer) -> int:
    """Multiply-adds per row of the linear layers inside `layer` (its GEMM work per token/patch)."""
    return sum(m.in_features * m.out_features for m in layer.sublayers(include_self=True)
               if hasattr(m, "in_features") and hasattr(m, "out_features"))
