"""Casts for checkpoint loading: bf16_to_float32(x) is x.astype("float32") (the reference) on the
compiled pqv_bf16_to_float32 when available: threaded, its output on transparent huge pages
(external_ops/convert/convert_ops.cc; the cast of a 2B model's bf16 checkpoint went from ~4.4 s to ~1 s).
Given a list, it joins the parts along axis 0 as it casts (a fused q/k/v or gate/up parameter
from its checkpoint pieces), without a separate paddle.concat."""
import paddle

from ._build import compiled_ops, exec_attrs


def bf16_to_float32_ref(x):
    return (paddle.concat(x, axis=0) if isinstance(x, (list, tuple)) else x).astype("float32")


def bf16_to_float32(x):
    """x: a bfloat16 tensor, or a list of them with equal trailing dims (joined along axis 0)."""
    parts = list(x) if isinstance(x, (list, tuple)) else [x]
    if not parts or any(p.dtype != paddle.bfloat16 for p in parts):
        raise ValueError(f"bf16_to_float32 takes bfloat16 tensors; got {[str(p.dtype) for p in parts]}")
    if len(parts) > 1 and any(p.ndim == 0 or p.shape[1:] != parts[0].shape[1:] for p in parts):
        raise ValueError(f"bf16_to_float32 joins along axis 0: the other dims must agree; got "
                         f"{[p.shape for p in parts]}")
    ops = compiled_ops()
    if ops is None:
        return bf16_to_float32_ref(x)
    return ops.pqv_bf16_to_float32(parts, *exec_attrs())
