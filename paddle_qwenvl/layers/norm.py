"""Normalisation layers with HF parameter names (weight, bias)."""
import paddle
import paddle.nn as nn

from ..ops.norm import layer_norm, rms_norm

_ONES = paddle.ParamAttr(initializer=nn.initializer.Constant(1.0))   # wins over a global initializer


class RMSNorm(nn.Layer):
    """RMSNorm over the last axis, optionally fused with the residual add before it (as in vLLM):
        norm(x)            -> out
        norm(x, residual)  -> (out, x + residual), out normalising x + residual
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = self.create_parameter([dim], attr=_ONES)

    def forward(self, x, residual=None):
        out, new_residual = rms_norm(x, self.weight, self.eps, residual)
        return out if residual is None else (out, new_residual)


class LayerNorm(nn.LayerNorm):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, epsilon=eps, weight_attr=_ONES)

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self._epsilon)
