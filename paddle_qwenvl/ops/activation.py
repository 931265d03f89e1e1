"""Fused activations, each beside its Paddle reference:
    swiglu(gate_up (M, 2I) = [gate | up]) -> silu(gate) * up (M, I)
    quick_gelu(x) -> x * sigmoid(1.702 x)   (Qwen2-VL's vision MLP; three Paddle ops otherwise)
"""
import paddle
import paddle.nn.functional as F

from ._build import compiled_ops, exec_attrs, kernel_applies


def swiglu_ref(gate_up):
    gate, up = gate_up.chunk(2, axis=-1)
    return F.silu(gate) * up


def swiglu(gate_up):
    if gate_up.ndim != 2 or gate_up.shape[1] % 2:
        raise ValueError(f"gate_up must be (M, 2I) = [gate | up]; got {gate_up.shape}")
    if not kernel_applies(gate_up):
        return swiglu_ref(gate_up)
    return compiled_ops().pqv_swiglu(gate_up, *exec_attrs())


def quick_gelu_ref(x):
    return x * F.sigmoid(1.702 * x)


def quick_gelu(x):
    if not kernel_applies(x):
        return quick_gelu_ref(x)
    return compiled_ops().pqv_quick_gelu(x, *exec_attrs())
