"""Activation functions by their HF config names."""
import paddle
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


def silu_and_mul(gate_up):
    """(..., 2I) laid out [gate | up] -> silu(gate) * up, (..., I)."""
    gate, up = paddle.chunk(gate_up, 2, axis=-1)
    return F.silu(gate) * up
