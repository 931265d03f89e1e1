"""What one request hands the engine: prompt token ids plus the processed pixels of its media.

Field names follow the HF processor output, so its dict can be passed as `PromptInputs(**out)`.
"""
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np


@dataclass
class PromptInputs:
    input_ids: List[int]
    pixel_values: Optional[Any] = None          # (N_img_patches, 3*2*14*14) float32
    image_grid_thw: Optional[Any] = None        # (n_images, 3)
    pixel_values_videos: Optional[Any] = None   # (N_vid_patches, 3*2*14*14) float32
    video_grid_thw: Optional[Any] = None        # (n_videos, 3)
    second_per_grid_ts: Optional[List[float]] = None   # Qwen2.5-VL: seconds per temporal grid

    def __post_init__(self):
        self.input_ids = [int(t) for t in np.asarray(self.input_ids).reshape(-1)]
        self.image_grid_thw = _grid(self.image_grid_thw, "image_grid_thw")
        self.video_grid_thw = _grid(self.video_grid_thw, "video_grid_thw")
        _check_pixels(self.pixel_values, self.image_grid_thw, "pixel_values", "image_grid_thw")
        _check_pixels(self.pixel_values_videos, self.video_grid_thw, "pixel_values_videos", "video_grid_thw")
        if self.second_per_grid_ts is not None:
            self.second_per_grid_ts = [float(s) for s in np.asarray(self.second_per_grid_ts).reshape(-1)]

    @property
    def has_media(self) -> bool:
        return bool(self.image_grid_thw) or bool(self.video_grid_thw)


def _grid(grid, name) -> List[tuple]:
    if grid is None or len(grid) == 0:
        return []
    grid = np.asarray(grid.numpy() if hasattr(grid, "numpy") else grid, dtype=np.int64)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must be (n, 3) rows of (t, h, w); got shape {grid.shape}")
    return [tuple(int(v) for v in row) for row in grid]


def _check_pixels(pixels, grids, pixel_name, grid_name) -> None:
    patches = sum(t * h * w for t, h, w in grids)
    have = 0 if pixels is None else int(pixels.shape[0])
    if have != patches:
        raise ValueError(f"{pixel_name} has {have} patch rows but {grid_name} describes {patches}")
