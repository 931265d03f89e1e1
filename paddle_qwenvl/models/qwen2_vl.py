"""Qwen2-VL (and QVQ): vision tower with full attention per frame + Qwen2 decoder."""
import paddle
import paddle.nn as nn

from ..config import ModelConfig, Precision, VisionConfig
from ..ops.attention_metadata import AttentionMetadata
from ..layers.embedding import TiedQuantizedEmbedding
from ..layers.linear import FLOAT32, make_linear
from ..layers.norm import LayerNorm
from ..ops.linear import linear
from .text import Qwen2Model
from .vision import (PatchEmbed, PatchMerger, VisionAttention, VisionMLP, VisionTower, cos_sin, frame_cu_seqlens,
                     vision_rotary)


class Qwen2VisionBlock(nn.Layer):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.norm1, self.norm2 = LayerNorm(cfg.hidden_size), LayerNorm(cfg.hidden_size)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads, quant, precision)
        self.mlp = VisionMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, quant, precision)

    def forward(self, x, cos, sin, cu_seqlens):
        x = x + self.attn(self.norm1(x), cos, sin, cu_seqlens)
        return x + self.mlp(self.norm2(x))


class Qwen2VisionTransformer(VisionTower):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.LayerList([Qwen2VisionBlock(cfg, quant, precision) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, LayerNorm(cfg.hidden_size), quant, precision)

    def _prepare(self, grid_thw):
        """Every block attends within a frame."""
        cos, sin = cos_sin(vision_rotary(grid_thw, self.cfg.spatial_merge_size, self.cfg.head_dim))
        return cos, sin, [frame_cu_seqlens(grid_thw)] * len(self.blocks), None


class Qwen2VLForConditionalGeneration(nn.Layer):
    vision_class = Qwen2VisionTransformer

    def __init__(self, config: ModelConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.config, self.quant, self.precision = config, quant, precision
        self.compute_dtype = precision.compute   # "float32": exact math on bf16-held weights too
        self.visual = self.vision_class(config.vision, quant.for_vision() if quant else None, precision)
        text, head_quant = config.text, quant.for_lm_head() if quant else None
        tied = text.tie_word_embeddings
        if not tied or head_quant:          # tied and not quantized: logits use embed_tokens.weight
            self.lm_head = make_linear(text.hidden_size, text.vocab_size, False, head_quant, precision)
        embed = TiedQuantizedEmbedding(self.lm_head) if tied and head_quant else None
        self.model = Qwen2Model(text, quant, precision, embed_tokens=embed)
        self.tp = None                  # a TensorParallel once split (models/tensor_parallel.py)

    @property
    def num_kv_heads(self) -> int:
        """The KV heads this process holds: all of them, or its rank's share."""
        return self.model.layers[0].self_attn.num_kv_heads

    def get_image_features(self, pixel_values, grid_thw):
        """pixel_values (N, patch_dim), grid_thw list of (t, h, w) -> (sum t*h*w / merge^2, hidden)."""
        return self.visual(pixel_values, _as_grid_list(grid_thw))

    get_video_features = get_image_features

    def embed_tokens(self, input_ids):
        x = self.model.embed_tokens(input_ids)
        return x if x.dtype == paddle.float32 else x.astype("float32")    # a bfloat16 table

    def forward(self, inputs_embeds, positions, attn_meta: AttentionMetadata, kv_caches):
        """(T, hidden) packed embeddings, (3, T) positions -> (T, hidden) final hidden states."""
        return self.model(inputs_embeds, positions, attn_meta, kv_caches)

    def compute_logits(self, hidden):
        if hasattr(self, "lm_head"):
            return self.lm_head(hidden)
        return linear(hidden, self.model.embed_tokens.weight,      # tied: the embedding table
                      exact=self.compute_dtype == "float32")


def _as_grid_list(grid_thw) -> list:
    if isinstance(grid_thw, paddle.Tensor):
        grid_thw = grid_thw.numpy()
    return [tuple(int(v) for v in row) for row in grid_thw]
