"""Activation functions by their HF config names (the gated SwiGLU is ops/activation.py's swiglu)."""
import paddle.nn.functional as F

from ..ops.activation import quick_gelu

ACTIVATIONS = {
    "silu": F.silu,
    "gelu": F.gelu,                      # exact (erf), as torch.nn.GELU()
    "quick_gelu": quick_gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate=True),
}


def get_activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
