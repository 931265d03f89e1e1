"""Normalisation layers with HF parameter names (weight, bias)."""
import paddle
import paddle.nn as nn

_ONES = paddle.ParamAttr(initializer=nn.initializer.Constant(1.0))   # wins over a global initializer


class RMSNorm(nn.Layer):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = self.create_parameter([dim], attr=_ONES)

    def forward(self, x):
        variance = x.pow(2).mean(axis=-1, keepdim=True)
        return self.weight * (x * paddle.rsqrt(variance + self.eps))


class LayerNorm(nn.LayerNorm):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, epsilon=eps, weight_attr=_ONES)
