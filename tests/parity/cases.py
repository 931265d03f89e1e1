"""Prompts as token ids with random pixels, for model-level parity (no processor involved)."""
import numpy as np

from paddle_qwenvl.engine.inputs import PromptInputs

PATCH_DIM = 3 * 2 * 14 * 14


def _vision(token, grid):
    t, h, w = grid
    return [token] * (t * h * w // 4)


def build(config, parts, seed=0):
    """parts: list of ints (text token ids), ("image", (t,h,w)) or ("video", (t,h,w), seconds)."""
    rng = np.random.default_rng(seed)
    ids, images, videos, seconds = [], [], [], []
    for part in parts:
        if isinstance(part, int):
            ids.append(part)
            continue
        kind, grid = part[0], part[1]
        token = config.image_token_id if kind == "image" else config.video_token_id
        ids += [config.vision_start_token_id] + _vision(token, grid) + [config.vision_end_token_id]
        (images if kind == "image" else videos).append(grid)
        if kind == "video":
            seconds.append(part[2])
    pixels = lambda grids: (rng.standard_normal((sum(t * h * w for t, h, w in grids), PATCH_DIM))
                            .astype(np.float32) if grids else None)
    return PromptInputs(ids, pixels(images), images, pixels(videos), videos, seconds)


CASES = {
    "text": [5, 17, 42, 99, 7, 300, 12],
    "one_image": [5, 6, ("image", (1, 8, 12)), 7, 8, 9],
    "two_images": [5, ("image", (1, 8, 12)), 7, ("image", (1, 20, 28)), 8, 9],
    "video": [5, 6, ("video", (3, 8, 8), 1.0), 7, 8],
    "video_2s": [5, ("video", (2, 12, 8), 2.0), 7, 8],
    "image_and_video": [5, ("image", (1, 16, 4)), 6, ("video", (2, 8, 8), 1.0), 7, 8, 9],
}
