"""Casts for checkpoint loading: bf16_to_float32(x) is x.astype("float32") (the reference) on the
compiled pqv_bf16_to_float32 when available: threaded, its output on transparent huge pages
(external_ops/convert_ops.cc; the cast of a 2B model's bf16 checkpoint went from ~4.4 s to ~1 s)."""
import paddle

from ._build import compiled_ops
from .threads import num_threads


def bf16_to_float32_ref(x):
    return x.astype("float32")


def bf16_to_float32(x):
    if x.dtype != paddle.bfloat16:
        raise ValueError(f"bf16_to_float32 takes a bfloat16 tensor; got {x.dtype}")
    ops = compiled_ops()
    if ops is None:
        return bf16_to_float32_ref(x)
    return ops.pqv_bf16_to_float32(x, num_threads())
