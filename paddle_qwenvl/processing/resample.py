"""Antialiased bicubic resize in float, as torch's interpolate(bicubic, antialias=True).

qwen-vl-utils resizes video frames with torchvision on float tensors, then rounds to uint8;
PIL's bicubic (used for images) clips and rounds between its two passes, which shifts noisy
frames by up to ~20 levels. This module reproduces the float path: per axis a banded weight
table (PIL's algorithm, Keys cubic with a = -0.5, support widened by the downscale factor),
width first, then height, accumulating in float32.
"""
import numpy as np


def _cubic(x, a=np.float32(-0.5)):
    # Keys cubic in float32, in the algebraic form torch's antialias kernel evaluates.
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, np.float32(0))).astype(np.float32)


def axis_weights(in_size, out_size):
    """(first index (out,), weights (out, taps) float32) for resampling one axis.

    Reproduces torch's float/double promotions term by term (center and the filter argument
    are computed in double, then rounded to float32), so the weights match bit for bit.
    """
    f32, f64 = np.float32, np.float64
    scale = f32(in_size) / f32(out_size)
    support = f32(2.0 * f64(scale)) if scale >= 1 else f32(2.0)
    inv_scale = f32(1.0 / f64(scale)) if scale >= 1 else f32(1.0)
    centers = (f64(scale) * (np.arange(out_size, dtype=f64) + 0.5)).astype(f32)
    first = np.maximum((((centers - support).astype(f64)) + 0.5).astype(np.int64), 0)
    last = np.minimum((((centers + support).astype(f64)) + 0.5).astype(np.int64), in_size)
    taps = int((last - first).max())
    offsets = first[:, None] + np.arange(taps)[None, :]
    arg = ((offsets.astype(f32) - centers[:, None]).astype(f64) + 0.5) * f64(inv_scale)
    weights = _cubic(arg.astype(f32))
    weights[offsets >= last[:, None]] = 0
    total = np.zeros(out_size, dtype=f32)
    for k in range(taps):  # sequential float32 sum, as torch
        total += weights[:, k]
    return first, weights / total[:, None]


def _resample_axis(x, axis, out_size):
    """Resample float32 `x` along `axis` (taps summed in order, as torch does).

    The axis is moved to the front and made contiguous, so each tap gathers whole rows.
    """
    first, weights = axis_weights(x.shape[axis], out_size)
    rows = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    flat = rows.reshape(rows.shape[0], -1)              # (in_size, everything else)
    index = np.minimum(first[:, None] + np.arange(weights.shape[1]), flat.shape[0] - 1)
    out = flat[index[:, 0]] * weights[:, :1]
    for k in range(1, weights.shape[1]):
        out += flat[index[:, k]] * weights[:, k:k + 1]
    return np.moveaxis(out.reshape((out_size,) + rows.shape[1:]), 0, axis)


def resize_frames(frames, height, width):
    """uint8 (T, H, W, C) -> uint8 (T, height, width, C): float bicubic, clamped and rounded."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = frames.astype(np.float32)
    if x.shape[2] != width:
        x = _resample_axis(x, 2, width)
    if x.shape[1] != height:
        x = _resample_axis(x, 1, height)
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)
