"""Gated MLP (SwiGLU) with gate and up projections fused into one matmul."""
import paddle.nn as nn

from .activation import get_activation
from .linear import Linear


class GatedMLP(nn.Layer):
    """down(act(gate(x)) * up(x)); `gate_up_proj` holds HF's gate_proj and up_proj stacked."""

    def __init__(self, hidden: int, intermediate: int, act: str = "silu", bias: bool = False):
        super().__init__()
        self.gate_up_proj = Linear(hidden, 2 * intermediate, bias=bias)
        self.down_proj = Linear(intermediate, hidden, bias=bias)
        self.act = get_activation(act)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, axis=-1)
        return self.down_proj(self.act(gate) * up)
