"""Antialiased bicubic resize in float, as torch's interpolate(bicubic, antialias=True).

qwen-vl-utils resizes video frames with torchvision on float tensors, then rounds to uint8;
PIL's bicubic (used for images) clips and rounds between its two passes, which shifts noisy
frames by up to ~20 levels. This module reproduces the float path: per axis a banded weight
table (PIL's algorithm, Keys cubic with a = -0.5, support widened by the downscale factor),
width first, then height, accumulating in float32.

Bit-exact (after rounding to uint8, and before) with torch 2.13's CPU kernel on this machine,
including where the compiled kernel fuses multiply-adds; tests/processing/test_video.py checks
it. Another torch build may fuse differently and differ by one level on rare pixels.
"""
import numpy as np


def _fma(a, b, c):
    """float32 a*b + c rounded once, like a fused multiply-add (a*b is exact in float64)."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def _cubic(x):
    # Keys cubic (a = -0.5) in float32, with the multiply-adds fused as torch's compiled kernel does.
    a = np.float32(-0.5)
    x = np.abs(x)
    near = _fma(_fma(a + 2, x, -(a + 3)) * x, x, np.float32(1))
    far = _fma(_fma(_fma(np.full_like(x, a), x, -5 * a), x, 8 * a), x, -4 * a)
    return np.where(x < 1, near, np.where(x < 2, far, np.float32(0))).astype(np.float32)


def axis_weights(in_size, out_size):
    """(first index (out,), weights (out, taps) float32) for resampling one axis.

    Reproduces torch's float/double promotions term by term (center and the filter argument
    go through double, then float32), so the weights match torch's bit for bit.
    """
    f32, f64 = np.float32, np.float64
    scale = f32(in_size) / f32(out_size)
    support = f32(2) * scale if scale >= 1 else f32(2)
    inv_scale = f32(1.0 / f64(scale)) if scale >= 1 else f32(1)
    centers = (f64(scale) * (np.arange(out_size) + 0.5)).astype(f32)
    first = np.maximum(((centers - support).astype(f64) + 0.5).astype(np.int64), 0)
    last = np.minimum(((centers + support).astype(f64) + 0.5).astype(np.int64), in_size)
    taps = int((last - first).max())
    offsets = first[:, None] + np.arange(taps)[None, :]
    arg = (((offsets.astype(f32) - centers[:, None]).astype(f64) + 0.5) * f64(inv_scale)).astype(f32)
    weights = _cubic(arg)
    weights[offsets >= last[:, None]] = 0
    total = np.zeros(out_size, dtype=f32)
    for k in range(taps):  # sequential float32 sum, as torch
        total += weights[:, k]
    return first, weights / total[:, None], last - first


def _accumulate(flat, index, weights, size):
    """Sum `size` taps for a group of outputs that all have `size` taps, in torch's order.

    torch 2.13's compiled CPU loop (measured on this machine) runs taps 1..size-1 as an
    unrolled-by-4 body with separate multiply and add, and fuses the remainder into FMAs.
    """
    acc = np.take(flat, index[:, 0], axis=0)
    acc *= weights[:, :1]
    term = np.empty_like(acc)
    unrolled = 4 * ((size - 1) // 4)
    for k in range(1, size):
        np.take(flat, index[:, k], axis=0, out=term)
        if k > unrolled:
            acc[...] = _fma(term, weights[:, k:k + 1], acc)
        else:
            term *= weights[:, k:k + 1]
            acc += term
    return acc


def _resample_axis(x, axis, out_size):
    """Resample float32 `x` along `axis`, summing taps in torch's order and rounding.

    The axis is moved to the front and made contiguous, so each tap gathers whole rows;
    outputs are grouped by their tap count (two or three distinct counts per axis).
    """
    first, weights, sizes = axis_weights(x.shape[axis], out_size)
    rows = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    flat = rows.reshape(rows.shape[0], -1)              # (in_size, everything else)
    index = np.minimum(first[:, None] + np.arange(weights.shape[1]), flat.shape[0] - 1)
    out = np.empty((out_size, flat.shape[1]), dtype=np.float32)
    for size in np.unique(sizes):
        group = np.nonzero(sizes == size)[0]
        out[group] = _accumulate(flat, index[group], weights[group], int(size))
    return np.moveaxis(out.reshape((out_size,) + rows.shape[1:]), 0, axis)


def resize_frames(frames, height, width, chunk=1):
    """uint8 (T, H, W, C) -> uint8 (T, height, width, C): float bicubic, clamped and rounded.

    Works on `chunk` frames at a time: the float32 copies stay small and in cache.
    """
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((frames.shape[0], height, width, frames.shape[3]), dtype=np.uint8)
    for start in range(0, frames.shape[0], chunk):
        out[start:start + chunk] = _resize_chunk(frames[start:start + chunk], height, width)
    return out


def _resize_chunk(frames, height, width):
    x = frames.astype(np.float32)
    if x.shape[2] != width:
        x = _resample_axis(x, 2, width)
    if x.shape[1] != height:
        x = _resample_axis(x, 1, height)
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)
