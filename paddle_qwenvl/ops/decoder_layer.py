"""One Qwen2 decoder layer in one compiled op call (external_ops/decoder/decoder_layer_op.cc).

The reference is the layer itself: `models.text.DecoderLayer` calling the single ops one by one
(norm, qkv projection, rotary, paged attention, o projection, norm, gate/up, swiglu, down). The
fused op chains the same kernel functions in C++, so both give the same numbers; what it saves is
the Python and Paddle side of eight op calls per layer, which run with cold caches after every
weight stream (~100-300 us each on a Xeon; docs/benchmarks.md, Decoder paths).

All the layers of a step go into one call, `decoder_stack` (pqv_decoder_stack: the same layer
op in a C++ loop), which saves the ~230 us that each per-layer call spent outside its C++ body
with cold caches.

decoder_path(x) decides which of the three runs (models/text.py asks it): "stack", "layer" or
"ops". PADDLE_QWENVL_FUSED_LAYERS=0 turns the fused ops off (the layers then call the single ops);
=layer keeps one op call per layer. An exported decoder step (paddle.jit.to_static) takes the same
choice: its attention layout comes as tensors (AttentionMetadata.token_seq / token_ctx), and every
sequence attends on the paged kernel (no GEMM sequences: their choice needs the host lengths).
"""

from .. import settings
from ._build import build_info, compiled_ops, exec_attrs, int8_prefill_tiles, kernel_applies
from .paged_attention import _kernel_inputs, gemm_sequences
from .linear import BF16_GEMM_ROWS
from .weight_only_linear import quant_gemm_rows

ENV = settings.FUSED_LAYERS.env
WEIGHT_NAMES = ("input_layernorm", "qkv", "qkv_bias", "o", "post_attention_layernorm", "gate_up", "down")
PATHS = {"1": "stack", "layer": "layer", "0": "ops"}     # PADDLE_QWENVL_FUSED_LAYERS -> path


def decoder_path(x) -> str:
    """How a decoder step on x runs, the one place that decides: "stack" (all layers in one
    decoder_stack call), "layer" (one decoder_layer call per layer) or "ops" (each layer calls the
    single ops): "ops" without compiled ops with oneDNN, for x not float32 or without rows, or when
    PADDLE_QWENVL_FUSED_LAYERS=0; else as that setting says (default "stack"), traced or not."""
    path = PATHS[settings.fused_layers()]
    if path == "ops" or not kernel_applies(x) or not build_info()["onednn"]:
        return "ops"
    return path


def _step_layout(meta, bf16_attention: bool):
    """(slot_mapping, block_tables, token_seq, token_ctx, gemm sequences) of the step: from the
    host lists, or as the traced step's tensors (no GEMM sequences)."""
    if meta.token_seq is not None:
        return meta.slot_mapping, meta.block_tables, meta.token_seq, meta.token_ctx, []
    return _kernel_inputs(meta) + (gemm_sequences(meta, "bfloat16" if bf16_attention else "float32"),)


def decoder_layer(x, residual, weights, scales, cos, sin, meta, kv_cache, *, eps: float, num_heads: int,
                  num_kv_heads: int, scale: float, group_size: int, bf16_attention: bool = False,
                  exact_linears: bool = False):
    """x (T, hidden) and residual (T, hidden) or None (first layer) -> (out, new residual); the
    step's k/v are written into kv_cache = (k_cache, v_cache) in place.

    weights: the tensors named in WEIGHT_NAMES, in that order; each linear's is its float32 /
    bfloat16 weight or its int8 / packed-int4 qweight. scales: the scales of the weight-only
    linears among qkv, o, gate_up, down, in that order (empty when none is quantized).
    bf16_attention: attention as paged_attention(compute_dtype="bfloat16") (a bf16 model's: its
    long fresh prompts on the bf16 GEMMs, paged_attention.gemm_sequences).
    exact_linears: bf16 dense weights as ops.linear(exact=True) (a float32 model holding its
    checkpoint's bf16 weights); else x is rounded to bf16 for them (a bf16 model's math).
    """
    if len(weights) != len(WEIGHT_NAMES):
        raise ValueError(f"weights must be {len(WEIGHT_NAMES)} tensors {WEIGHT_NAMES}; got {len(weights)}")
    slots, tables, token_seq, token_ctx, gemm = _step_layout(meta, bf16_attention)
    out, new_residual, _, _ = compiled_ops().pqv_decoder_layer(
        x, residual, list(weights), list(scales) or None, cos, sin, kv_cache[0], kv_cache[1], slots, tables,
        token_seq, token_ctx, float(eps), int(num_heads), int(num_kv_heads), float(scale), int(meta.block_size),
        int(group_size), gemm, bool(exact_linears), int8_prefill_tiles(), quant_gemm_rows(), BF16_GEMM_ROWS,
        *exec_attrs())
    return out, new_residual


def decoder_stack(x, layers, cos, sin, meta, kv_caches, *, eps: float, num_heads: int, num_kv_heads: int,
                  scale: float, group_size: int, bf16_attention: bool = False, exact_linears: bool = False):
    """Every decoder layer of a step in one op call: x (T, hidden), the first layer's input ->
    (last layer's output, its residual), as decoder_layer applied layer after layer.

    layers: per layer, (weights, scales) as decoder_layer takes them; kv_caches: per layer, the
    (k_cache, v_cache) pair, written in place."""
    if len(layers) != len(kv_caches) or not layers:
        raise ValueError(f"{len(layers)} layers given with {len(kv_caches)} kv caches")
    weights, scales = [], []
    for layer_weights, layer_scales in layers:
        if len(layer_weights) != len(WEIGHT_NAMES):
            raise ValueError(f"weights must be {len(WEIGHT_NAMES)} tensors {WEIGHT_NAMES}; got {len(layer_weights)}")
        weights.extend(layer_weights)
        scales.extend(layer_scales)
    slots, tables, token_seq, token_ctx, gemm = _step_layout(meta, bf16_attention)
    out, residual = compiled_ops().pqv_decoder_stack(
        x, weights, scales or None, cos, sin, [k for k, _ in kv_caches], [v for _, v in kv_caches], slots, tables,
        token_seq, token_ctx, float(eps), int(num_heads), int(num_kv_heads), float(scale), int(meta.block_size),
        int(group_size), gemm, bool(exact_linears), int8_prefill_tiles(), quant_gemm_rows(), BF16_GEMM_ROWS,
        *exec_attrs())
    return out, residual
