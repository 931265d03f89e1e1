"""Qwen2 text decoder: GQA attention with M-RoPE, RMSNorm, SwiGLU; works on packed tokens."""
import paddle
import paddle.nn as nn

from ..config import Precision, TextConfig
from ..layers.attention import Attention
from ..ops.attention_metadata import AttentionMetadata
from ..layers.linear import FLOAT32, make_embedding
from ..layers.mlp import GatedMLP
from ..layers.norm import RMSNorm
from ..layers.rotary import MRotaryEmbedding
from ..ops.decoder_layer import decoder_layer, decoder_path, decoder_stack


class DecoderLayer(nn.Layer):
    def __init__(self, cfg: TextConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.self_attn = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                                   cfg.head_dim, quant, precision)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, quant=quant, precision=precision)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.fusable = True     # False when split for tensor parallelism (models/tensor_parallel.py)

    def forward(self, x, residual, cos, sin, meta, kv_cache):
        """x (T, hidden): the previous layer's output, not yet added to `residual` (None for the
        first layer). Returns (mlp output, residual); each add is fused into the next RMSNorm.
        With the compiled ops, the whole layer runs as one op (`as_one_op`)."""
        if self.fusable and decoder_path(x) != "ops":
            return self.as_one_op(x, residual, cos, sin, meta, kv_cache)
        if residual is None:
            x, residual = self.input_layernorm(x), x
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(x, cos, sin, meta, kv_cache)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual

    def op_arguments(self):
        """(weights, scales, settings) of this layer for the one-op path (ops/decoder_layer.py)."""
        attn, mlp = self.self_attn, self.mlp
        linears = (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
        (qkv, o, gate_up, down), scales = zip(*(layer.op_weights() for layer in linears))  # scales: None if float
        weights = [self.input_layernorm.weight, qkv, attn.qkv_proj.bias, o, self.post_attention_layernorm.weight,
                   gate_up, down]
        settings = dict(eps=self.input_layernorm.eps, num_heads=attn.num_heads, num_kv_heads=attn.num_kv_heads,
                        scale=attn.scale, group_size=max(getattr(layer, "group_size", 0) for layer in linears),
                        bf16_attention=attn.compute_dtype == "bfloat16",
                        exact_linears=any(getattr(layer, "exact", False) for layer in linears))
        return weights, [s for s in scales if s is not None], settings

    def as_one_op(self, x, residual, cos, sin, meta, kv_cache):
        """forward() in one compiled op call (ops/decoder_layer.py): the same kernels, without
        the Python side of each."""
        weights, scales, settings = self.op_arguments()
        return decoder_layer(x, residual, weights, scales, cos, sin, meta, kv_cache, **settings)


class Qwen2Model(nn.Layer):
    """HF's `model.*` weights: embed_tokens, layers, norm."""

    def __init__(self, cfg: TextConfig, quant=None, precision: Precision = FLOAT32, embed_tokens: nn.Layer = None):
        super().__init__()
        # embed_tokens: given when tied to a quantized lm_head (layers/embedding.py)
        self.embed_tokens = make_embedding(cfg.vocab_size, cfg.hidden_size, precision) if embed_tokens is None \
            else embed_tokens
        self.layers = nn.LayerList([DecoderLayer(cfg, quant, precision) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = MRotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.mrope_section)

    def forward(self, inputs_embeds, positions, meta: AttentionMetadata, kv_caches):
        """inputs_embeds (T, hidden), positions (3, T) int64 -> hidden (T, hidden)."""
        if len(kv_caches) != len(self.layers):
            raise ValueError(f"{len(kv_caches)} kv caches given for {len(self.layers)} layers")
        cos, sin = self.rotary(positions)
        stack = self.layers[0].fusable and decoder_path(inputs_embeds) == "stack"
        args = [layer.op_arguments() for layer in self.layers] if stack else []
        if args and all(a[2] == args[0][2] for a in args):    # all layers in one op call
            x, residual = decoder_stack(inputs_embeds, [(w, s) for w, s, _ in args], cos, sin, meta, kv_caches,
                                        **args[0][2])
            return self.norm(x, residual)[0]
        x, residual = inputs_embeds, None
        for layer, kv_cache in zip(self.layers, kv_caches):
            x, residual = layer(x, residual, cos, sin, meta, kv_cache)
        return self.norm(x) if residual is None else self.norm(x, residual)[0]
