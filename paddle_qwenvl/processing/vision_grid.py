"""Host-side geometry of the vision towers, from the grids (t, h, w) alone: the patches' rotary
angles and the attention blocks (frames; Qwen2.5-VL's windows). The towers take these as inputs,
so the dygraph towers and the exported programs compute them the same way, here.

GRID_INPUTS: per architecture (config.json's architectures[0]), the function giving a tower's
inputs besides its pixels, as numpy arrays in the order the tower's encode() takes them.
"""
import numpy as np

from ..config import VisionConfig


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


def _int64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def frame_inputs(cfg: VisionConfig, grid_thw) -> dict:
    """Qwen2-VL: rotary angles (N, head_dim) float32, the frames' cu_seqlens (frames + 1,)."""
    return {"rotary": vision_rotary(grid_thw, cfg.spatial_merge_size, cfg.head_dim),
            "cu_seqlens": _int64(frame_cu_seqlens(grid_thw))}


def window_inputs(cfg: VisionConfig, grid_thw) -> dict:
    """Qwen2.5-VL: rotary angles in window order, the frames' and the windows' cu_seqlens, the merge
    groups' window order and its inverse."""
    unit = cfg.spatial_merge_size ** 2
    order, window_cu = window_index(grid_thw, cfg.window_size, cfg.patch_size, cfg.spatial_merge_size)
    emb = vision_rotary(grid_thw, cfg.spatial_merge_size, cfg.head_dim)
    emb = emb.reshape(-1, unit, emb.shape[-1])[order].reshape(-1, emb.shape[-1])
    return {"rotary": emb, "cu_seqlens": _int64(frame_cu_seqlens(grid_thw)),
            "window_cu_seqlens": _int64(window_cu), "order": _int64(order), "inverse_order": _int64(np.argsort(order))}


GRID_INPUTS = {
    "Qwen2VLForConditionalGeneration": frame_inputs,
    "Qwen2_5_VLForConditionalGeneration": window_inputs,
}
