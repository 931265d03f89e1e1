"""Host-side M-RoPE positions for one sequence, computed once at prefill."""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..config import ModelConfig


def get_mrope_positions(input_ids: Sequence[int], image_grid_thw: Optional[list], video_grid_thw: Optional[list],
                        second_per_grid_ts: Optional[list], config: ModelConfig) -> Tuple[np.ndarray, int]:
    """Positions (3, L) int64 on the (temporal, height, width) axes, and the decode delta.

    Text tokens advance all three axes together. A vision block of t x h x w patches (merged to
    t x h/m x w/m tokens) starts at `s` = 1 + the largest position so far (plus the text before
    it) and gives each token (s + t_i, s + h_i, s + w_i). For Qwen2.5-VL videos t_i is
    floor(i * second_per_grid_t * tokens_per_second), for Qwen2-VL just i.
    Decoded token number p (0-based in the whole sequence) then sits at p + delta on all axes,
    delta = max position + 1 - L.

    Example (merge 2): ids = [a, b, <vs>, I, I, I, I, <ve>, c] with one image grid (1, 4, 4)
    (2 x 2 = 4 image tokens I):
        temporal: 0 1 2  3 3 3 3  5 6
        height:   0 1 2  3 3 4 4  5 6
        width:    0 1 2  3 4 3 4  5 6       delta = 7 - 9 = -2

    Unlike transformers 4.57.3, which casts second_per_grid_t to an integer before scaling
    (0.5 s per grid becomes 0), the temporal scale here keeps the fraction, as the original
    Qwen2.5-VL release and vLLM do; they agree whenever second_per_grid_t is whole (fps 2).
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    items = _vision_items(ids, image_grid_thw or [], video_grid_thw or [], second_per_grid_ts, config)
    merge = config.vision.spatial_merge_size
    chunks: List[np.ndarray] = []
    start, next_pos = 0, 0
    for first, (t, h, w), seconds in items:
        chunks.append(_text(first - start, next_pos))
        block = _vision_block(t, h // merge, w // merge, seconds, config) + next_pos + (first - start)
        chunks.append(block)
        next_pos = int(block.max()) + 1
        start = first + t * (h // merge) * (w // merge)
    if start < len(ids):
        chunks.append(_text(len(ids) - start, next_pos))
    positions = np.concatenate(chunks, axis=1) if chunks else np.zeros((3, 0), np.int64)
    return positions, int(positions.max()) + 1 - len(ids) if len(ids) else 0


def _text(n: int, offset: int) -> np.ndarray:
    return np.broadcast_to(np.arange(n, dtype=np.int64) + offset, (3, n))


def _vision_block(t, gh, gw, seconds, config) -> np.ndarray:
    """(3, t*gh*gw) offsets of a vision block's tokens, relative to its start."""
    if seconds is None:                                   # Qwen2-VL and images: one step per grid
        t_index = np.arange(t)
    else:
        scale = seconds * config.vision.tokens_per_second
        t_index = np.array([int(i * scale) for i in range(t)], dtype=np.int64)
    grid = np.stack(np.meshgrid(t_index, np.arange(gh), np.arange(gw), indexing="ij"))
    return grid.reshape(3, -1).astype(np.int64)


def _vision_items(ids, image_grids, video_grids, second_per_grid_ts, config):
    """[(index of the block's first pad token, grid (t,h,w), seconds per temporal grid or None)]."""
    is_qwen2_5 = config.architecture == "Qwen2_5_VLForConditionalGeneration"
    starts = np.flatnonzero(ids[:-1] == config.vision_start_token_id) + 1
    kinds = ids[starts]
    n_img, n_vid = int((kinds == config.image_token_id).sum()), int((kinds == config.video_token_id).sum())
    if n_img != len(image_grids) or n_vid != len(video_grids):
        raise ValueError(f"the prompt has {n_img} image and {n_vid} video placeholders but "
                         f"{len(image_grids)} image and {len(video_grids)} video grids were given")
    items, img, vid = [], iter(image_grids), iter(range(len(video_grids)))
    for first, kind in zip(starts, kinds):
        if kind == config.image_token_id:
            items.append((int(first), tuple(next(img)), 0.0 if is_qwen2_5 else None))
        elif kind == config.video_token_id:
            v = next(vid)
            seconds = (second_per_grid_ts[v] if second_per_grid_ts else 1.0) if is_qwen2_5 else None
            items.append((int(first), tuple(video_grids[v]), seconds))
    return items
