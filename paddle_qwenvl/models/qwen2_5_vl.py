"""Qwen2.5-VL: vision tower with window attention (full attention in a few blocks) + Qwen2 decoder."""
import paddle
import paddle.nn as nn

from ..config import Precision, VisionConfig
from ..layers.linear import FLOAT32
from ..layers.mlp import GatedMLP
from ..layers.norm import RMSNorm
from ..processing.vision_grid import window_inputs
from .qwen2_vl import Qwen2VLForConditionalGeneration
from .vision import PatchEmbed, PatchMerger, VisionAttention, VisionRun, VisionTower


class Qwen2_5VisionBlock(nn.Layer):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.hidden_size), RMSNorm(cfg.hidden_size)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads, quant, precision)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, True, quant, precision)

    def forward(self, x, cos, sin, cu_seqlens):
        x = x + self.attn(self.norm1(x), cos, sin, cu_seqlens)
        return x + self.mlp(self.norm2(x))


class Qwen2_5VisionTransformer(VisionTower):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.LayerList([Qwen2_5VisionBlock(cfg, quant, precision) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, RMSNorm(cfg.hidden_size), quant, precision)

    def grid_inputs(self, grid_thw) -> dict:
        """What encode() needs besides the pixels (processing/vision_grid.py, window_inputs)."""
        return window_inputs(self.cfg, grid_thw)

    def begin(self, pixel_values, rotary, cu_seqlens, window_cu_seqlens, order, inverse_order) -> VisionRun:
        """Rows go window by window (restored after the merger); a few blocks attend over whole
        frames, the others within windows."""
        x = _reorder_groups(self.patch_embed(pixel_values), order, self.cfg.spatial_merge_size ** 2)
        block_cu = [cu_seqlens if i in self.cfg.fullatt_block_indexes else window_cu_seqlens
                    for i in range(len(self.blocks))]
        return VisionRun(x, rotary.cos(), rotary.sin(), block_cu, inverse_order)

    def encode(self, pixel_values, rotary, cu_seqlens, window_cu_seqlens, order, inverse_order):
        """The tower on tensors (an exported tower traces this): the cu_seqlens host lists in dygraph."""
        return self.run_whole(self.begin(pixel_values, rotary, cu_seqlens, window_cu_seqlens, order, inverse_order))


def _reorder_groups(x, order, unit):
    """(N, C) -> rows permuted in blocks of `unit` consecutive patches following `order`."""
    grouped = x.reshape([-1, unit, x.shape[-1]])
    return paddle.gather(grouped, order).reshape([-1, x.shape[-1]])


class Qwen2_5_VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    vision_class = Qwen2_5VisionTransformer
