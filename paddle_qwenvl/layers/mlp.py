"""Gated MLP (SwiGLU) with gate and up projections fused into one matmul."""
import paddle.nn as nn

from .activation import get_activation
from .linear import make_linear


class GatedMLP(nn.Layer):
    """down(act(gate(x)) * up(x)); `gate_up_proj` holds HF's gate_proj and up_proj stacked."""

    def __init__(self, hidden: int, intermediate: int, act: str = "silu", bias: bool = False, quant=None):
        super().__init__()
        self.gate_up_proj = make_linear(hidden, 2 * intermediate, bias, quant)
        self.down_proj = make_linear(intermediate, hidden, bias, quant)
        self.act = get_activation(act)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, axis=-1)
        return self.down_proj(self.act(gate) * up)
