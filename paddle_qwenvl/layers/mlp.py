"""Gated MLP (SwiGLU) with gate and up projections fused into one matmul."""
import paddle.nn as nn

from ..ops.activation import swiglu
from ..config import Precision
from .linear import FLOAT32, make_linear


class GatedMLP(nn.Layer):
    """down(silu(gate(x)) * up(x)); `gate_up_proj` holds HF's gate_proj and up_proj stacked, so
    its output (M, 2I) = [gate | up] is what the fused swiglu op takes."""

    def __init__(self, hidden: int, intermediate: int, act: str = "silu", bias: bool = False, quant=None,
                 precision: Precision = FLOAT32):
        super().__init__()
        if act != "silu":
            raise ValueError(f"gated MLP with hidden_act {act!r}: only 'silu' (SwiGLU, as every Qwen2-VL / "
                             "Qwen2.5-VL checkpoint uses) is implemented")
        self.gate_up_proj = make_linear(hidden, 2 * intermediate, bias, quant, precision)
        self.down_proj = make_linear(intermediate, hidden, bias, quant, precision)

    def forward(self, x):
        if x.ndim != 2:                                                     # (..., H) -> (M, H)
            return self.forward(x.reshape([-1, x.shape[-1]])).reshape(x.shape)
        return self.down_proj(swiglu(self.gate_up_proj(x)))                  # (M, 2I) -> (M, I) -> (M, H)
