"""Activation functions by their HF config names (the gated SwiGLU is ops/activation.py's swiglu)."""
import paddle.nn.functional as F


def quick_gelu(x):
    return x * F.sigmoid(1.702 * x)


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
