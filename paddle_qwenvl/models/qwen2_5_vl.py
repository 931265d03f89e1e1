"""Qwen2.5-VL: vision tower with window attention (full attention in a few blocks) + Qwen2 decoder."""
import numpy as np
import paddle
import paddle.nn as nn

from ..config import Precision, VisionConfig
from ..layers.linear import FLOAT32
from ..layers.mlp import GatedMLP
from ..layers.norm import RMSNorm
from .qwen2_vl import Qwen2VLForConditionalGeneration
from .vision import PatchEmbed, PatchMerger, VisionAttention, VisionTower, cos_sin, frame_cu_seqlens, vision_rotary


class Qwen2_5VisionBlock(nn.Layer):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.hidden_size), RMSNorm(cfg.hidden_size)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads, quant, precision)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, True, quant, precision)

    def forward(self, x, cos, sin, cu_seqlens):
        x = x + self.attn(self.norm1(x), cos, sin, cu_seqlens)
        return x + self.mlp(self.norm2(x))


def window_index(grid_thw, window_size: int, patch_size: int, merge: int):
    """Reorder merge-groups window by window; returns (group order, window cu_seqlens in patches).

    Each frame's (h/m, w/m) grid of merge groups is cut into windows of
    window_size / m / patch_size groups per side (4 for 112/2/14); edge windows are smaller.
    """
    side = window_size // merge // patch_size
    order, cu, offset = [], [0], 0
    for t, h, w in grid_thw:
        gh, gw = h // merge, w // merge
        ids = np.arange(t * gh * gw).reshape(t, gh, gw)
        for frame in ids:
            for r in range(0, gh, side):
                for c in range(0, gw, side):
                    win = frame[r:r + side, c:c + side].reshape(-1)
                    order.append(win + offset)
                    cu.append(cu[-1] + win.size * merge * merge)
        offset += t * gh * gw
    return np.concatenate(order), cu


class Qwen2_5VisionTransformer(VisionTower):
    def __init__(self, cfg: VisionConfig, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.LayerList([Qwen2_5VisionBlock(cfg, quant, precision) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, RMSNorm(cfg.hidden_size), quant, precision)

    def _prepare(self, grid_thw):
        """Rows go window by window (restored after the merger); a few blocks attend over whole
        frames, the others within windows."""
        cfg, unit = self.cfg, self.cfg.spatial_merge_size ** 2
        order, window_cu = window_index(grid_thw, cfg.window_size, cfg.patch_size, cfg.spatial_merge_size)
        frame_cu = frame_cu_seqlens(grid_thw)
        emb = vision_rotary(grid_thw, cfg.spatial_merge_size, cfg.head_dim)
        emb = emb.reshape(-1, unit, emb.shape[-1])[order].reshape(-1, emb.shape[-1])
        cos, sin = cos_sin(emb)
        block_cu = [frame_cu if i in cfg.fullatt_block_indexes else window_cu for i in range(len(self.blocks))]
        return cos, sin, block_cu, order


class Qwen2_5_VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    vision_class = Qwen2_5VisionTransformer
