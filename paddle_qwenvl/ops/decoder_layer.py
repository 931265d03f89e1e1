"""One Qwen2 decoder layer in one compiled op call (external_ops/decoder_layer_op.cc).

The reference is the layer itself: `models.text.DecoderLayer` calling the single ops one by one
(norm, qkv projection, rotary, paged attention, o projection, norm, gate/up, swiglu, down). The
fused op chains the same kernel functions in C++, so both give the same numbers; what it saves is
the Python and Paddle side of eight op calls per layer, which run with cold caches after every
weight stream (~100-300 us each on the 2026-12 machine; docs/kernels.md, session 8).

PADDLE_QWENVL_FUSED_LAYERS=0 turns it off (the layer then calls the single ops).
"""
import os

import paddle

from ._build import build_info, compiled_ops, kernel_applies
from .paged_attention import _kernel_inputs
from .threads import num_threads

ENV = "PADDLE_QWENVL_FUSED_LAYERS"
WEIGHT_NAMES = ("input_layernorm", "qkv", "qkv_bias", "o", "post_attention_layernorm", "gate_up", "down")


def decoder_layer_applies(x) -> bool:
    """Whether a decoder layer should run as one op on x: in dygraph (a static graph keeps the
    single ops), compiled ops with oneDNN loaded, float32 x with rows, and not turned off."""
    if os.environ.get(ENV, "1").strip() == "0" or not paddle.in_dynamic_mode():
        return False
    return kernel_applies(x) and build_info()["onednn"]


def decoder_layer(x, residual, weights, scales, cos, sin, meta, kv_cache, *, eps: float, num_heads: int,
                  num_kv_heads: int, scale: float, group_size: int):
    """x (T, hidden) and residual (T, hidden) or None (first layer) -> (out, new residual); the
    step's k/v are written into kv_cache = (k_cache, v_cache) in place.

    weights: the tensors named in WEIGHT_NAMES, in that order; each linear's is its float32 /
    bfloat16 weight or its int8 / packed-int4 qweight. scales: the scales of the weight-only
    linears among qkv, o, gate_up, down, in that order (empty when none is quantized).
    """
    if len(weights) != len(WEIGHT_NAMES):
        raise ValueError(f"weights must be {len(WEIGHT_NAMES)} tensors {WEIGHT_NAMES}; got {len(weights)}")
    slots, tables, token_seq, token_ctx = _kernel_inputs(meta)
    out, new_residual, _, _ = compiled_ops().pqv_decoder_layer(
        x, residual, list(weights), list(scales) or None, cos, sin, kv_cache[0], kv_cache[1], slots, tables,
        token_seq, token_ctx, float(eps), int(num_heads), int(num_kv_heads), float(scale), int(meta.block_size),
        int(group_size), num_threads())
    return out, new_residual
