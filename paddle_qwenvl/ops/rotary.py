"""Rotary embedding (rotate-half form, as Qwen2-VL's M-RoPE and vision rotary) on packed tokens.

apply_rotary(x (T, H, D), cos (T, D), sin (T, D)) -> x * cos + rotate_half(x) * sin
cos/sin already carry the M-RoPE section merge (one angle per token and frequency), so the same
op serves q and k of the decoder and the vision tower.
"""
import paddle

from ._build import compiled_ops, kernel_applies
from .threads import num_threads


def rotate_half(x):
    x1, x2 = x.chunk(2, axis=-1)
    return paddle.concat([-x2, x1], axis=-1)


def apply_rotary_ref(x, cos, sin):
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def _check(x, cos, sin):
    if x.ndim != 3 or x.shape[2] % 2 or list(cos.shape) != [x.shape[0], x.shape[2]] or cos.shape != sin.shape:
        raise ValueError(f"x must be (T, H, D) with even D and cos/sin (T, D); got {x.shape}, {cos.shape}, {sin.shape}")


def apply_rotary(x, cos, sin):
    if paddle.in_dynamic_mode():                  # to_static: symbolic shapes, the op checks them
        _check(x, cos, sin)
    if not kernel_applies(x):
        return apply_rotary_ref(x, cos, sin)
    if cos.dtype != paddle.float32:
        cos, sin = cos.astype("float32"), sin.astype("float32")
    return compiled_ops().pqv_rotary(x, cos, sin, num_threads())


def apply_rotary_qk(q, k, cos, sin):
    """Both q (T, Hq, D) and k (T, Hkv, D) with the same cos/sin."""
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
