"""Decoder self-attention: fused qkv projection, M-RoPE, paged KV cache."""
import paddle.nn as nn

from ..ops.paged_attention import paged_attention
from ..ops.rotary import rotary_qkv
from ..ops.attention_metadata import AttentionMetadata
from ..config import Precision
from .linear import FLOAT32, make_linear


class Attention(nn.Layer):
    """`qkv_proj` holds HF's q_proj, k_proj, v_proj stacked along the output axis."""

    def __init__(self, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int, quant=None,
                 precision: Precision = FLOAT32):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_size, self.kv_size = num_heads * head_dim, num_kv_heads * head_dim
        self.qkv_proj = make_linear(hidden, self.q_size + 2 * self.kv_size, True, quant, precision)
        self.o_proj = make_linear(self.q_size, hidden, False, quant, precision)
        self.scale = head_dim ** -0.5
        self.compute_dtype = precision.compute      # a bf16 model attends in bf16 too (fresh prompts)

    def forward(self, x, cos, sin, meta: AttentionMetadata, kv_cache):
        q, k, v = rotary_qkv(self.qkv_proj(x), cos, sin, self.num_heads, self.num_kv_heads)  # (T, heads, D)
        out = paged_attention(q, k, v, kv_cache[0], kv_cache[1], meta, self.scale,
                              self.compute_dtype)                                      # (T, H, D)
        return self.o_proj(out.reshape([x.shape[0], self.q_size]))
