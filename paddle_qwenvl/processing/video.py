"""Videos to vision-tower input, following qwen-vl-utils' sampling rules and HF's patchify.

A video file becomes
    frames [start, end] from video_start / video_end (seconds)
    -> nframes sampled evenly (fps-based, default 2 fps, 4..768 frames, a multiple of 2)
    -> each frame resized to smart_resize(H, W) under a per-frame pixel budget derived from the
       total video budget (total_pixels / nframes * 2, between min_pixels and 768*28*28),
       with torchvision's float antialiased bicubic (resample.py), rounded to uint8
    -> patches (t * h * w, 1176) with grid_thw = (nframes / 2, h / 14, w / 14)
and second_per_grid_t = temporal_patch_size / sampled_fps (Qwen2.5-VL's temporal positions).
A list of images (or a uint8 (T, H, W, 3) array) is a video too: one frame per image, taken
as sampled at `sample_fps` (default 2).
"""
import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import InputError, VideoDecodeError
from .image import frames_to_patches, load_image, resize, smart_resize
from .resample import resize_frames
from .sources import FetchOptions, resolve

FRAME_FACTOR = 2


@dataclass(frozen=True)
class VideoOptions:
    """Defaults of qwen-vl-utils for patch_size 14 (factor 28); every field is overridable."""
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int = 128 * 28 * 28            # per frame
    max_pixels: int = 768 * 28 * 28            # per frame, before the total budget
    total_pixels: float = 128000 * 28 * 28 * 0.9  # whole video
    sample_fps: float = 2.0                    # assumed fps of a video given as image frames


def _ceil_to(x, k):
    return math.ceil(x / k) * k


def _floor_to(x, k):
    return math.floor(x / k) * k


def smart_nframes(total_frames, video_fps, options, part):
    """Number of frames to sample: part["nframes"] rounded to even, else by fps within limits."""
    if "nframes" in part and "fps" in part:
        raise InputError("give a video either 'nframes' or 'fps', not both")
    if "nframes" in part:
        nframes = round(part["nframes"] / FRAME_FACTOR) * FRAME_FACTOR
    else:
        fps = part.get("fps", options.fps)
        min_frames = _ceil_to(part.get("min_frames", options.min_frames), FRAME_FACTOR)
        max_frames = _floor_to(part.get("max_frames", min(options.max_frames, total_frames)), FRAME_FACTOR)
        nframes = min(max(total_frames / video_fps * fps, min_frames), max_frames, total_frames)
        nframes = _floor_to(nframes, FRAME_FACTOR)
    if not FRAME_FACTOR <= nframes <= total_frames:
        raise VideoDecodeError(
            f"need between {FRAME_FACTOR} and {total_frames} sampled frames, got {nframes}; the video "
            f"(or its video_start..video_end range) has {total_frames} frames")
    return nframes


def frame_range(total_frames, video_fps, part):
    """(first, last, count) frame indices covered by part's video_start / video_end seconds."""
    if video_fps <= 0 or total_frames <= 0:
        raise VideoDecodeError(f"video reports {total_frames} frames at {video_fps} fps; nothing to decode")
    start, end = part.get("video_start"), part.get("video_end")
    if start is None and end is None:
        return 0, total_frames - 1, total_frames
    duration = total_frames / video_fps
    first = math.ceil(min(max(start, 0.0), duration) * video_fps) if start is not None else 0
    last = total_frames - 1
    if end is not None:
        last = min(math.floor(min(max(end, 0.0), duration) * video_fps), total_frames - 1)
    if first >= last:
        raise InputError(
            f"video_start={start} / video_end={end} select no frames of a {duration:.2f}s video "
            f"({total_frames} frames at {video_fps:.3f} fps)")
    return first, last, last - first + 1


def sample_indices(first, last, nframes):
    """Evenly spaced frame indices, rounded half-to-even.

    Computed in float32 as torch.linspace does (qwen-vl-utils uses it): the float32 error decides
    which way a value near .5 rounds, and float64 would pick other frames in some cases.
    """
    if nframes == 1:
        return [first]
    start, end = np.float32(first), np.float32(last)
    step = (end - start) / np.float32(nframes - 1)
    i = np.arange(nframes)
    half = nframes // 2
    low = start + step * i[:half].astype(np.float32)
    high = end - step * (nframes - 1 - i[half:]).astype(np.float32)
    return np.round(np.concatenate([low, high])).astype(np.int64).tolist()


def frame_pixel_limits(nframes, options, part):
    """(min_pixels, max_pixels) per frame: the total budget shared by the sampled frames."""
    min_pixels = part.get("min_pixels", options.min_pixels)
    total_pixels = part.get("total_pixels", options.total_pixels)
    max_pixels = max(min(options.max_pixels, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
    return min_pixels, min(part.get("max_pixels", max_pixels), max_pixels)


def frame_size(height, width, nframes, image_options, options, part):
    """(h, w) every frame is resized to."""
    factor = image_options.factor
    if "resized_height" in part and "resized_width" in part:
        return smart_resize(int(part["resized_height"]), int(part["resized_width"]), factor,
                            image_options.min_pixels, image_options.max_pixels, at_least_factor=True)
    min_pixels, max_pixels = frame_pixel_limits(nframes, options, part)
    # min_pixels wins over a small shared budget (a long low-resolution video), as in qwen-vl-utils.
    return smart_resize(height, width, factor, min_pixels, max_pixels, at_least_factor=True, strict=False)


FRAMES_PER_CHUNK = 16  # frames decoded (and resized) at a time: bounds memory for long HD videos


@dataclass
class SampledVideo:
    frames: np.ndarray    # (nframes, H, W, 3) uint8, after `transform`
    indices: list         # frame index of each sampled frame in the file
    sample_fps: float     # frames per second after sampling


def _keep(chunk, nframes):
    return chunk


def _sample(total_frames, video_fps, options, part):
    first, last, count = frame_range(total_frames, video_fps, part)
    nframes = smart_nframes(count, video_fps, options, part)
    return sample_indices(first, last, nframes), nframes / count * video_fps


def _read_decord(path, options, part, transform=_keep):
    import decord  # optional dependency; PyAV is the fallback
    reader = decord.VideoReader(path, num_threads=1)
    indices, sample_fps = _sample(len(reader), reader.get_avg_fps(), options, part)
    chunks = [transform(reader.get_batch(indices[i:i + FRAMES_PER_CHUNK]).asnumpy(), len(indices))
              for i in range(0, len(indices), FRAMES_PER_CHUNK)]
    return SampledVideo(np.concatenate(chunks), indices, sample_fps)


def _count_frames_av(path):
    import av
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = _video_fps_av(stream)
        if stream.frames:
            return stream.frames, fps
        return sum(1 for packet in container.demux(stream) if packet.size), fps


def _video_fps_av(stream):
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _sampled_frames_av(path, indices):
    """Yield the frames at `indices` (ascending) as rgb24 arrays, decoding sequentially."""
    import av
    remaining = list(indices)
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            while remaining and remaining[0] == i:
                remaining.pop(0)
                yield frame.to_ndarray(format="rgb24")
            if not remaining:
                return
    raise VideoDecodeError(f"could decode only {len(indices) - len(remaining)} of {len(indices)} sampled "
                           f"frames; frames from {remaining[0]} on are missing or corrupt")


def _read_av(path, options, part, transform=_keep):
    total, fps = _count_frames_av(path)
    indices, sample_fps = _sample(total, fps, options, part)
    chunks, pending = [], []
    for frame in _sampled_frames_av(path, indices):
        pending.append(frame)
        if len(pending) == FRAMES_PER_CHUNK:
            chunks.append(transform(np.stack(pending), len(indices)))
            pending = []
    if pending:
        chunks.append(transform(np.stack(pending), len(indices)))
    return SampledVideo(np.concatenate(chunks), indices, sample_fps)


def _read_file(path, options, part, transform):
    """decord when it can open the file, PyAV otherwise (or when decord is missing)."""
    try:
        return _read_decord(path, options, part, transform)
    except InputError:
        raise
    except Exception as decord_error:  # ImportError, decord.DECORDError, ...: try PyAV
        try:
            return _read_av(path, options, part, transform)
        except InputError:
            raise
        except Exception as av_error:
            raise VideoDecodeError(
                f"cannot decode video {os.path.basename(path)!r}: decord: {decord_error}; "
                f"PyAV: {av_error}") from None


def read_video(source, options=VideoOptions(), part=None, fetch_options=FetchOptions(), transform=_keep):
    """Sample frames of a video file given as path, file://, data: or http(s):// URL.

    transform(chunk uint8 (n, H, W, 3), nframes) is applied to each chunk of decoded frames.
    """
    part = part or {}
    data_or_path = resolve(source, fetch_options)
    if isinstance(data_or_path, str):
        return _read_file(data_or_path, options, part, transform)
    with tempfile.NamedTemporaryFile(suffix=".video") as tmp:  # decord reads from paths only
        tmp.write(data_or_path)
        tmp.flush()
        return _read_file(tmp.name, options, part, transform)


def _images_as_video(images, image_options, options, part, fetch_options):
    """A list of image frames; padded to an even count by repeating the last frame."""
    if not images:
        raise VideoDecodeError("a video given as a list of frames needs at least one frame")
    frames = [load_image(f, fetch_options, image_options.max_input_pixels) for f in images]
    if len({f.size for f in frames}) > 1:
        raise InputError(f"all frames of a video must have one size, got {sorted({f.size for f in frames})}")
    frames += [frames[-1]] * (_ceil_to(len(frames), FRAME_FACTOR) - len(frames))
    return frames, part.get("sample_fps", options.sample_fps)


def _list_frames(frames, image_options, part):
    """qwen-vl-utils' fetch_image on each frame: PIL bicubic to the image-limit size."""
    width, height = frames[0].size
    limits = (part.get("min_pixels", image_options.min_pixels), part.get("max_pixels", image_options.max_pixels))
    if "resized_height" in part and "resized_width" in part:
        height, width, limits = int(part["resized_height"]), int(part["resized_width"]), \
            (image_options.min_pixels, image_options.max_pixels)
    h, w = smart_resize(height, width, image_options.factor, *limits, at_least_factor=True)
    return np.stack([np.asarray(resize(f, h, w)) for f in frames])


def process_video(video, image_options, options=VideoOptions(), part=None, fetch_options=FetchOptions()):
    """A video source or list of frames -> (patches (N, 1176), grid_thw, second_per_grid_t)."""
    part = part or {}

    def fit(frames, nframes):  # (n, H, W, 3) -> (n, h, w, 3) at the per-frame budget
        size = frame_size(*frames.shape[1:3], nframes, image_options, options, part)
        return resize_frames(frames, *size)

    if isinstance(video, np.ndarray) and video.ndim == 4:
        video = list(video)  # (T, H, W, 3) uint8 frames
    if isinstance(video, (list, tuple)):
        images, sample_fps = _images_as_video(video, image_options, options, part, fetch_options)
        frames = _list_frames(images, image_options, part)
        frames = fit(frames, len(frames))
    else:  # resized chunk by chunk while decoding: full-size frames never pile up
        sampled = read_video(video, options, part, fetch_options, transform=fit)
        frames, sample_fps = sampled.frames, sampled.sample_fps
    # HF's video processor (torch) normalises with rescale folded into mean/std.
    patches, grid = frames_to_patches(frames, image_options, fused_normalize=True)
    return patches, grid, image_options.temporal_patch_size / sample_fps
