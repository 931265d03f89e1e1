"""Rotary embedding (rotate-half form, as Qwen2-VL's M-RoPE and vision rotary) on a packed qkv.

rotary_qkv(qkv (T, (Hq + 2 Hkv) D), cos (T, D), sin (T, D), Hq, Hkv) -> q (T, Hq, D), k (T, Hkv, D),
v (T, Hkv, D): the fused projection's output cut into heads, q and k rotated
(x * cos + rotate_half(x) * sin), v as it is. cos/sin already carry the M-RoPE section merge (one
angle per token and frequency), so the same op serves the decoder (GQA) and the vision tower
(Hkv = Hq). One compiled op where split + 3 reshapes + 2 rotations were six Paddle calls.
"""
import paddle

from ._build import compiled_ops, exec_attrs, kernel_applies


def rotate_half(x):
    x1, x2 = x.chunk(2, axis=-1)
    return paddle.concat([-x2, x1], axis=-1)


def apply_rotary_ref(x, cos, sin):
    """x (T, H, D), cos/sin (T, D)."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def rotary_qkv_ref(qkv, cos, sin, num_heads: int, num_kv_heads: int):
    T, D = qkv.shape[0], qkv.shape[1] // (num_heads + 2 * num_kv_heads)
    q, k, v = qkv.split([num_heads * D, num_kv_heads * D, num_kv_heads * D], axis=-1)
    return (apply_rotary_ref(q.reshape([T, num_heads, D]), cos, sin),
            apply_rotary_ref(k.reshape([T, num_kv_heads, D]), cos, sin), v.reshape([T, num_kv_heads, D]))


def _check(qkv, cos, sin, num_heads, num_kv_heads):
    heads = num_heads + 2 * num_kv_heads
    if qkv.ndim != 2 or num_heads < 1 or num_kv_heads < 1 or qkv.shape[1] % heads or (qkv.shape[1] // heads) % 2:
        raise ValueError(f"qkv must be (T, (num_heads + 2 * num_kv_heads) * head_dim) with an even head_dim; got "
                         f"{qkv.shape} for num_heads={num_heads}, num_kv_heads={num_kv_heads}")
    if list(cos.shape) != [qkv.shape[0], qkv.shape[1] // heads] or cos.shape != sin.shape:
        raise ValueError(f"cos and sin must be (T, head_dim) = {[qkv.shape[0], qkv.shape[1] // heads]}; "
                         f"got {cos.shape}, {sin.shape}")


def rotary_qkv(qkv, cos, sin, num_heads: int, num_kv_heads: int):
    if paddle.in_dynamic_mode():                  # to_static: symbolic shapes, the op checks them
        _check(qkv, cos, sin, num_heads, num_kv_heads)
    if not kernel_applies(qkv):
        return rotary_qkv_ref(qkv, cos, sin, num_heads, num_kv_heads)
    if cos.dtype != paddle.float32:
        cos, sin = cos.astype("float32"), sin.astype("float32")
    q, k, v = compiled_ops().pqv_rotary_qkv(qkv, cos, sin, num_heads, num_kv_heads, *exec_attrs())
    return q, k, v
