"""Pieces shared by the Qwen2-VL and Qwen2.5-VL vision towers."""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import paddle
import paddle.nn as nn

from ..config import Precision, VisionConfig
from ..layers.activation import get_activation
from ..layers.linear import FLOAT32, make_linear
from ..ops.block_attention import block_attention
from ..ops.linear import linear
from ..ops.rotary import rotary_qkv


@dataclass
class VisionRun:
    """A vision tower's pass over some patches, resumable between blocks (so an engine can spread
    a long video's tower over several steps)."""
    x: paddle.Tensor                   # (N, hidden) after `next_block` blocks
    cos: paddle.Tensor
    sin: paddle.Tensor
    block_cu_seqlens: list             # each block's attention spans
    inverse_order: Optional[paddle.Tensor] = None    # restores the patches' order after the merger
    next_block: int = 0

    @property
    def num_patches(self) -> int:
        return self.x.shape[0]


class VisionTower(nn.Layer):
    """patch_embed -> blocks -> merger, runnable whole (`forward`, `encode`) or a few blocks at a
    time (`start`, `advance`, `finish`: the same numbers). Subclasses set patch_embed, blocks and
    merger, `grid_inputs` (host arrays from the grids) and `begin` (a pass's start from the pixels
    and those inputs as tensors); their `encode` takes the same inputs, for tracing."""

    def grid_inputs(self, grid_thw) -> dict:
        raise NotImplementedError

    def begin(self, pixel_values, *inputs) -> VisionRun:
        raise NotImplementedError

    def start(self, pixel_values, grid_thw) -> VisionRun:
        return self.begin(pixel_values, **tower_inputs(self.grid_inputs(grid_thw)))

    def advance(self, run: VisionRun, num_blocks: int) -> bool:
        """Runs up to num_blocks more blocks; True once all have run."""
        stop = min(run.next_block + num_blocks, len(self.blocks))
        for i in range(run.next_block, stop):
            run.x = self.blocks[i](run.x, run.cos, run.sin, run.block_cu_seqlens[i])
        run.next_block = stop
        return stop == len(self.blocks)

    def finish(self, run: VisionRun):
        """(N / merge^2, out_hidden) in the patches' own order."""
        out = self.merger(run.x)
        return out if run.inverse_order is None else paddle.gather(out, run.inverse_order)

    def run_whole(self, run: VisionRun):
        self.advance(run, len(self.blocks))
        return self.finish(run)

    def forward(self, pixel_values, grid_thw):
        """(N, patch_dim) patches of all images/frames -> (N / merge^2, out_hidden)."""
        return self.run_whole(self.start(pixel_values, grid_thw))


class PatchEmbed(nn.Layer):
    """HF's Conv3d with stride == kernel, computed as one matmul over flattened patches."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.proj = nn.Layer()
        kernel = [cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size]
        self.proj.weight = self.proj.create_parameter([cfg.hidden_size] + kernel)
        self.patch_dim, self.hidden_size = cfg.patch_dim, cfg.hidden_size

    def forward(self, pixel_values):
        """(N, C*T*P*P) -> (N, hidden)."""
        if pixel_values.ndim != 2 or pixel_values.shape[1] != self.patch_dim:
            raise ValueError(f"pixel_values must be (num_patches, {self.patch_dim}); got {pixel_values.shape}")
        weight = self.proj.weight.reshape([self.hidden_size, self.patch_dim])
        return linear(pixel_values, weight)          # oneDNN: 4784 patches 87 -> ~45 ms (Paddle's matmul)


class VisionAttention(nn.Layer):
    def __init__(self, dim: int, num_heads: int, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.compute_dtype = precision.compute      # a bf16 model attends in bf16 too (long blocks)
        self.qkv = make_linear(dim, 3 * dim, True, quant, precision)
        self.proj = make_linear(dim, dim, True, quant, precision)

    def forward(self, x, cos, sin, cu_seqlens):
        N = x.shape[0]
        q, k, v = rotary_qkv(self.qkv(x), cos, sin, self.num_heads, self.num_heads)        # (N, H, D) each
        out = block_attention(q, k, v, cu_seqlens, self.head_dim ** -0.5, self.compute_dtype)
        return self.proj(out.reshape([N, -1]))


class VisionMLP(nn.Layer):
    """Qwen2-VL's fc1 -> act -> fc2."""

    def __init__(self, dim: int, hidden: int, act: str, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.fc1 = make_linear(dim, hidden, True, quant, precision)
        self.fc2 = make_linear(hidden, dim, True, quant, precision)
        self.act = get_activation(act)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class PatchMerger(nn.Layer):
    """Norm each patch, then concatenate each merge x merge group and project: (N, C) -> (N/m^2, out)."""

    def __init__(self, cfg: VisionConfig, norm: nn.Layer, quant=None, precision: Precision = FLOAT32):
        super().__init__()
        self.merged_dim = cfg.hidden_size * cfg.spatial_merge_size ** 2
        self.ln_q = norm
        self.mlp = nn.LayerList([make_linear(self.merged_dim, self.merged_dim, True, quant, precision), nn.GELU(),
                                 make_linear(self.merged_dim, cfg.out_hidden_size, True, quant, precision)])

    def forward(self, x):
        x = self.ln_q(x).reshape([-1, self.merged_dim])
        for layer in self.mlp:
            x = layer(x)
        return x


def tower_inputs(grid_inputs: dict) -> dict:
    """A tower's grid_inputs() as encode() takes them in dygraph: arrays as tensors (rotary
    float32), cu_seqlens as host lists (block_attention chooses its path from them)."""
    return {name: value.tolist() if "cu_seqlens" in name else
            paddle.to_tensor(value.astype(np.float32) if value.dtype.kind == "f" else value)
            for name, value in grid_inputs.items()}
