"""Pieces shared by the Qwen2-VL and Qwen2.5-VL vision towers."""
from dataclasses import dataclass
from typing import List, Optional

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
    block_cu_seqlens: List[list]       # each block's attention spans
    order: Optional[np.ndarray] = None  # merge-group order the rows are in (Qwen2.5-VL's windows)
    next_block: int = 0

    @property
    def num_patches(self) -> int:
        return self.x.shape[0]


class VisionTower(nn.Layer):
    """patch_embed -> blocks -> merger, runnable whole (`forward`) or a few blocks at a time
    (`start`, `advance`, `finish`: the same numbers). Subclasses set patch_embed, blocks, merger
    and `_prepare`."""

    def _prepare(self, grid_thw):
        """(cos, sin, each block's cu_seqlens, merge-group order or None) for these grids."""
        raise NotImplementedError

    def start(self, pixel_values, grid_thw) -> VisionRun:
        cos, sin, block_cu, order = self._prepare(grid_thw)
        x = self.patch_embed(pixel_values)
        if order is not None:
            x = reorder_groups(x, order, self.cfg.spatial_merge_size ** 2)
        return VisionRun(x, cos, sin, block_cu, order)

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
        return out if run.order is None else paddle.gather(out, paddle.to_tensor(np.argsort(run.order)))

    def forward(self, pixel_values, grid_thw):
        """(N, patch_dim) patches of all images/frames -> (N / merge^2, out_hidden)."""
        run = self.start(pixel_values, grid_thw)
        self.advance(run, len(self.blocks))
        return self.finish(run)


def reorder_groups(x, order, unit):
    """(N, C) -> rows permuted in blocks of `unit` consecutive patches following `order`."""
    grouped = x.reshape([-1, unit, x.shape[-1]])
    return paddle.gather(grouped, paddle.to_tensor(order)).reshape([-1, x.shape[-1]])


def linear_macs(layer: nn.Layer) -> int:
    """Multiply-adds per row of the linear layers inside `layer` (its GEMM work per token/patch)."""
    return sum(m.in_features * m.out_features for m in layer.sublayers(include_self=True)
               if hasattr(m, "in_features") and hasattr(m, "out_features"))


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


def rotary_position_ids(grid_thw, merge: int) -> np.ndarray:
    """(h, w) patch coordinates of every patch, in the order patches arrive (merge groups contiguous).

    Patches come grouped merge x merge: for h=w=4, merge=2 the rows are
    (0,0) (0,1) (1,0) (1,1) (0,2) (0,3) (1,2) (1,3) (2,0) ...; repeated for each of t frames.
    """
    out = []
    for t, h, w in grid_thw:
        hpos = np.broadcast_to(np.arange(h)[:, None], (h, w))
        wpos = np.broadcast_to(np.arange(w)[None, :], (h, w))
        pair = np.stack([_merge_order(hpos, merge), _merge_order(wpos, merge)], axis=-1)
        out.append(np.tile(pair, (t, 1)))
    return np.concatenate(out, axis=0)


def _merge_order(grid: np.ndarray, m: int) -> np.ndarray:
    h, w = grid.shape
    return grid.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3).reshape(-1)


def vision_rotary(grid_thw, merge: int, head_dim: int, theta: float = 10000.0):
    """cos, sin (N, head_dim): half the rotary dims follow the patch row, half the column."""
    dim = head_dim // 2
    inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    ids = rotary_position_ids(grid_thw, merge)                       # (N, 2)
    freqs = (ids[..., None].astype(np.float32) * inv_freq).reshape(len(ids), -1)   # (N, dim)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return emb


def frame_cu_seqlens(grid_thw) -> list:
    """Block boundaries with one block per frame: [0, h*w, 2*h*w, ...]."""
    lens = [h * w for t, h, w in grid_thw for _ in range(t)]
    return np.concatenate([[0], np.cumsum(lens)]).astype(int).tolist()


def cos_sin(emb: np.ndarray):
    e = paddle.to_tensor(emb.astype(np.float32))
    return e.cos(), e.sin()
