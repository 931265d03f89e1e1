"""Qwen2-VL (and QVQ): vision tower with full attention per frame + Qwen2 decoder."""
import paddle
import paddle.nn as nn

from ..config import ModelConfig, Precision, VisionConfig
from ..ops.attention_metadata import AttentionMetadata
from ..layers.embedding import TiedQuantizedEmbedding
from ..layers.linear import FLOAT32, make_linear
from ..layers.norm import LayerNorm
from ..ops.linear import linear
from ..processing.vision_grid import frame_inputs
from .text import Qwen2Model
from .vision import PatchEmbed, PatchMerger, VisionAttention, VisionMLP, VisionRun, VisionTower


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

    def grid_inputs(self, grid_thw) -> dict:
        """What encode() needs besides the pixels (processing/vision_grid.py, frame_inputs)."""
        return frame_inputs(self.cfg, grid_thw)

    def begin(self, pixel_values, rotary, cu_seqlens) -> VisionRun:
        """Every block attends within a frame."""
        return VisionRun(self.patch_embed(pixel_values), rotary.cos(), rotary.sin(), [cu_seqlens] * len(self.blocks))

    def encode(self, pixel_values, rotary, cu_seqlens):
        """The tower on tensors (an exported tower traces this): cu_seqlens a host list in dygraph."""
        return self.run_whole(self.begin(pixel_values, rotary, cu_seqlens))


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

    def step(self, input_ids, positions, media_rows, media_embeds, attn_meta: AttentionMetadata, kv_caches,
             logit_rows):
        """One engine step -> logits (len(logit_rows), vocab): input_ids (T,) embedded, the rows
        media_rows (M,) of them replaced by media_embeds (M, hidden) (None: no media), then the
        decoder over the paged cache and the logits of the packed rows logit_rows (R,) int64."""
        embeds = self.step_embeds(input_ids, media_rows, media_embeds)
        return self.step_logits(embeds, positions, attn_meta, kv_caches, logit_rows)

    def step_embeds(self, input_ids, media_rows, media_embeds):
        """step()'s first half: (T, hidden) token embeddings with the media rows in place."""
        embeds = self.embed_tokens(input_ids)
        if media_rows is not None:
            embeds = paddle.scatter(embeds, media_rows, media_embeds, overwrite=True)
        return embeds

    def step_logits(self, embeds, positions, attn_meta: AttentionMetadata, kv_caches, logit_rows):
        """step()'s second half: the decoder over the paged cache, the logits of logit_rows."""
        hidden = self(embeds, positions, attn_meta, kv_caches)
        return self.compute_logits(paddle.gather(hidden, logit_rows))

    def compute_logits(self, hidden):
        if hasattr(self, "lm_head"):
            return self.lm_head(hidden)
        return linear(hidden, self.model.embed_tokens.weight,      # tied: the embedding table
                      exact=self.compute_dtype == "float32")


def _as_grid_list(grid_thw) -> list:
    if isinstance(grid_thw, paddle.Tensor):
        grid_thw = grid_thw.numpy()
    return [tuple(int(v) for v in row) for row in grid_thw]
