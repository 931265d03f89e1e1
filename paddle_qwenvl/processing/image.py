"""Images to vision-tower input, exactly as HF transformers' Qwen2VLImageProcessor (slow path).

An image of H x W pixels becomes
    resize to (h, w) = smart_resize(H, W)   multiples of patch_size * merge_size (28)
    -> rescale (x / 255) -> normalise with CLIP mean/std
    -> patches (grid_t * grid_h * grid_w, 3 * temporal_patch_size * patch_size**2) = (N, 1176)
with grid_thw = (1, h / 14, w / 14); a still image is repeated to fill the temporal patch.
"""
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import AspectRatioError, ImageLoadError, ImageTooLargeError, InputError
from .sources import FetchOptions, resolve

MAX_ASPECT_RATIO = 200
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class ImageOptions:
    """Defaults come from preprocessor_config.json; see Processor for per-call overrides."""
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN))
    image_std: List[float] = field(default_factory=lambda: list(CLIP_STD))
    rescale_factor: float = 1 / 255
    max_input_pixels: int = Image.MAX_IMAGE_PIXELS or 89478485  # decoded-size guard

    @property
    def factor(self):
        return self.patch_size * self.merge_size


def smart_resize(height, width, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
                 at_least_factor=False, strict=True):
    """(h, w) near (height, width), multiples of `factor`, with min_pixels <= h*w <= max_pixels.

    Rounds with Python's round (half to even) like HF. `at_least_factor=True` first clamps each
    side to >= factor, as qwen-vl-utils does for video frames; HF's image processor does not.
    `strict=True` raises when rounding would exceed max_pixels (HF would return the larger
    size); video frames use strict=False because qwen-vl-utils lets min_pixels win there.
    Example: smart_resize(720, 1280) == (728, 1288).
    """
    _check_aspect_ratio(height, width)
    if min_pixels > max_pixels:
        raise InputError(f"min_pixels={min_pixels} is larger than max_pixels={max_pixels}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if at_least_factor:
        h_bar, w_bar = max(factor, h_bar), max(factor, w_bar)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if strict:
        _check_within_limits(height, width, h_bar, w_bar, max_pixels)
    return h_bar, w_bar


def _check_aspect_ratio(height, width):
    if min(height, width) <= 0:
        raise InputError(f"image size must be positive, got {height}x{width} (h x w)")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise AspectRatioError(
            f"image aspect ratio must be at most {MAX_ASPECT_RATIO}, got {height}x{width} (h x w); "
            "crop or pad the image")


def _check_within_limits(height, width, h_bar, w_bar, max_pixels):
    # Only reachable when min_pixels is close to max_pixels: rounding up overshoots max_pixels.
    if h_bar * w_bar > max_pixels:
        raise InputError(
            f"{height}x{width} cannot be resized to a multiple of the patch grid within "
            f"max_pixels={max_pixels} (got {h_bar}x{w_bar}); widen the min_pixels..max_pixels range")


def _open_bytes_or_path(data_or_path):
    stream = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, our limit
        return Image.open(stream)


def _check_input_size(image, max_input_pixels):
    width, height = image.size
    if width * height > max_input_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, more than max_input_pixels="
            f"{max_input_pixels}; shrink it first or raise max_input_pixels if you trust the source")


def _decode(data_or_path, max_input_pixels):
    try:
        image = _open_bytes_or_path(data_or_path)
        _check_input_size(image, max_input_pixels)
        image.load()  # decode now: truncated data fails here, not later
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise ImageLoadError("the data is not an image Pillow can read (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise ImageLoadError(f"image is truncated or corrupt: {e}") from None
    return image


def _from_array(array):
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InputError(
            f"numpy images must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {array.dtype} {array.shape}")
    return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def load_image(source, fetch_options=FetchOptions(), max_input_pixels=ImageOptions.max_input_pixels):
    """A decoded RGB PIL image from a PIL image, numpy uint8 array, path, file://, data: or URL."""
    if isinstance(source, Image.Image):
        image = source
        _check_input_size(image, max_input_pixels)
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
        _check_input_size(image, max_input_pixels)
    else:
        image = _decode(resolve(source, fetch_options), max_input_pixels)
    return image if image.mode == "RGB" else image.convert("RGB")


def resize(image, height, width):
    """PIL bicubic resize, as HF's image processor (resample=3) and qwen-vl-utils do."""
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample=Image.BICUBIC)


def normalize_table(options, fused=False):
    """(3, 256) float32: the normalised value of each uint8 level per channel.

    fused=False: HF's slow image processor, rescale (float64 multiply, cast to float32) then
    (x - mean) / std in float32. fused=True: HF's torch video processor, which folds the
    rescale into mean and std (mean * 255, std * 255 in float32) and normalises raw levels.
    Either way a table lookup gives values bit-identical to the reference arithmetic.
    """
    mean = np.array(options.image_mean, dtype=np.float32)[:, None]
    std = np.array(options.image_std, dtype=np.float32)[:, None]
    if fused:
        inverse = np.float32(1.0 / options.rescale_factor)
        levels = np.arange(256, dtype=np.float32)
        return (levels[None, :] - mean * inverse) / (std * inverse)
    levels = (np.arange(256, dtype=np.float64) * options.rescale_factor).astype(np.float32)
    return (levels[None, :] - mean) / std


def patchify(frames, options):
    """(T, C, H, W) -> (patches (t*h*w, C*tps*p*p), (t, h, w)) in the vision tower's order.

    T is padded to a multiple of temporal_patch_size by repeating the last frame. Patches are
    ordered (t, h/merge, w/merge, merge, merge): each merge x merge window is contiguous.
    Columns are ordered (C, tps, p, p).
    """
    p, tps, m = options.patch_size, options.temporal_patch_size, options.merge_size
    if frames.shape[0] % tps:
        pad = np.repeat(frames[-1:], tps - frames.shape[0] % tps, axis=0)
        frames = np.concatenate([frames, pad], axis=0)
    t_all, c, height, width = frames.shape
    grid = (t_all // tps, height // p, width // p)
    x = frames.reshape(grid[0], tps, c, grid[1] // m, m, p, grid[2] // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, h/m, w/m, m, m, C, tps, p, p)
    return np.ascontiguousarray(x).reshape(grid[0] * grid[1] * grid[2], c * tps * p * p), grid


def frames_to_patches(frames, options, fused_normalize=False):
    """uint8 (T, H, W, 3) frames -> (float32 patches (N, 3*tps*p*p), grid_thw).

    Patchify the uint8 frames first (4x less data to move), then normalise by table lookup.
    """
    patches, grid = patchify(frames.transpose(0, 3, 1, 2), options)
    table = normalize_table(options, fused_normalize)
    out = np.empty(patches.shape, dtype=np.float32)
    width = patches.shape[1] // 3  # columns per channel
    for c in range(3):
        cols = slice(c * width, (c + 1) * width)
        np.take(table[c], patches[:, cols], out=out[:, cols])
    return out, grid


def target_size(image, options, part=None):
    """(h, w) for one image; `part` may carry min_pixels/max_pixels or resized_height/resized_width."""
    part = part or {}
    if "resized_height" in part and "resized_width" in part:
        # qwen-vl-utils: explicit size, still snapped to the grid with the model's limits.
        return smart_resize(int(part["resized_height"]), int(part["resized_width"]), options.factor,
                            options.min_pixels, options.max_pixels, at_least_factor=True)
    width, height = image.size
    min_pixels = int(part.get("min_pixels", options.min_pixels))
    max_pixels = int(part.get("max_pixels", options.max_pixels))
    return smart_resize(height, width, options.factor, min_pixels, max_pixels)


def process_image(image, options, part=None):
    """RGB PIL image -> (patches float32 (N, 1176), grid_thw (1, h/14, w/14))."""
    height, width = target_size(image, options, part)
    pixels = np.asarray(resize(image, height, width))[None]  # (1, h, w, 3) uint8
    return frames_to_patches(pixels, options)
