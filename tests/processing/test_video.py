"""Videos: frame sampling as qwen-vl-utils, frames patchified as HF, decord and PyAV agree."""
import itertools
import math

import numpy as np
import pytest
from PIL import Image

from paddle_qwenvl.processing.errors import InputError, VideoDecodeError
from paddle_qwenvl.processing.image import ImageOptions, frames_to_patches, smart_resize
from paddle_qwenvl.processing.resample import resize_frames
from paddle_qwenvl.processing.video import (
    VideoOptions, _read_av, _read_decord, frame_pixel_limits, frame_range, process_video,
    read_video, sample_indices, smart_nframes)

from .conftest import write_video

IMAGE_OPTIONS = ImageOptions(min_pixels=3136, max_pixels=12845056)
OPTIONS = VideoOptions()

PARTS = [{}, {"fps": 1.0}, {"fps": 4.0}, {"nframes": 6}, {"nframes": 7}, {"fps": 2.0, "max_frames": 8},
         {"fps": 0.5, "min_frames": 6}, {"video_start": 0.3}, {"video_end": 2.1},
         {"video_start": 0.5, "video_end": 1.7, "fps": 3.0}]


def _reference_indices(qvu, part, total_frames, video_fps):
    """qwen-vl-utils' decord reader, minus decoding: frame range, nframes, torch.linspace indices."""
    import torch
    first, last, count = qvu.calculate_video_frame_range(part, total_frames, video_fps)
    nframes = qvu.smart_nframes(part, total_frames=count, video_fps=video_fps)
    indices = torch.linspace(first, last, nframes).round().long().tolist()
    return indices, nframes / max(count, 1e-6) * video_fps


@pytest.mark.parametrize("total_frames,video_fps", [(8, 2.0), (30, 10.0), (49, 24.0), (61, 29.97),
                                                    (150, 30.0), (301, 60.0), (2000, 25.0)])
def test_sampling_rules_match_qwen_vl_utils(qwen_vl_utils, total_frames, video_fps):
    for part in PARTS:
        try:
            expected = _reference_indices(qwen_vl_utils, part, total_frames, video_fps)
        except ValueError:
            with pytest.raises(InputError):
                first, last, count = frame_range(total_frames, video_fps, part)
                smart_nframes(count, video_fps, OPTIONS, part)
            continue
        first, last, count = frame_range(total_frames, video_fps, part)
        nframes = smart_nframes(count, video_fps, OPTIONS, part)
        assert sample_indices(first, last, nframes) == expected[0], part
        assert math.isclose(nframes / count * video_fps, expected[1]), part


def test_linspace_indices_match_torch_rounding():
    torch = pytest.importorskip("torch")
    for first, last, n in itertools.product(range(0, 30, 7), range(31, 2000, 97), [2, 4, 6, 10, 30, 768]):
        assert sample_indices(first, last, n) == torch.linspace(first, last, n).round().long().tolist()
    # float64 linspace picks another frame here (index 13: 6.5 -> 6; torch's float32 value rounds to 7).
    assert sample_indices(0, 7, 27) == torch.linspace(0, 7, 27).round().long().tolist()
    assert sample_indices(0, 7, 27) != np.round(np.linspace(0, 7, 27)).astype(int).tolist()


def test_frame_budget_and_size_match_qwen_vl_utils(qwen_vl_utils):
    for nframes, (height, width), part in itertools.product(
            [4, 16, 200, 768], [(64, 96), (720, 1280), (1080, 1920), (30, 2000)],
            [{}, {"total_pixels": 20000 * 28 * 28}, {"min_pixels": 16 * 28 * 28}, {"max_pixels": 200 * 28 * 28}]):
        min_pixels, max_pixels = frame_pixel_limits(nframes, OPTIONS, part)
        # qwen-vl-utils fetch_video's budget, with its constants for image_patch_size 14.
        ref_min = part.get("min_pixels", 128 * 28 * 28)
        ref_total = part.get("total_pixels", 128000 * 28 * 28 * 0.9)
        ref_max = max(min(768 * 28 * 28, ref_total / nframes * 2), int(ref_min * 1.05))
        ref_max = min(part.get("max_pixels", ref_max), ref_max)
        assert (min_pixels, max_pixels) == (ref_min, ref_max)
        ours = smart_resize(height, width, 28, min_pixels, max_pixels, at_least_factor=True, strict=False)
        assert ours == qwen_vl_utils.smart_resize(height, width, 28, ref_min, ref_max)


@pytest.mark.parametrize("num_frames,fps", [(12, 4), (50, 25), (91, 30), (40, 7.5)])
def test_decord_and_pyav_sample_the_same_frames(tmp_path, qwen_vl_utils, num_frames, fps):
    path = write_video(tmp_path / "v.mp4", num_frames, fps)
    for part in [{}, {"fps": 4.0}, {"nframes": 4}, {"video_start": 0.25, "video_end": 1.2}]:
        expected, expected_fps = _reference_indices(qwen_vl_utils, part, num_frames, float(fps))
        by_decord = _read_decord(str(path), OPTIONS, part)
        by_av = _read_av(str(path), OPTIONS, part)
        assert by_decord.indices == by_av.indices == expected, part
        assert math.isclose(by_decord.sample_fps, expected_fps) and math.isclose(by_av.sample_fps, expected_fps)
        assert np.array_equal(by_decord.frames, by_av.frames)
        # Frame i was written with red level 5*i; the decoded level identifies the frame.
        reds = by_decord.frames[:, 10, -10, 0].astype(int)
        assert np.all(np.abs(reds - (np.array(expected) * 5) % 256) <= 3), part


def test_video_patches_match_hf_frame_patchify(tmp_path):
    transformers = pytest.importorskip("transformers")
    path = write_video(tmp_path / "v.mp4", 40, 10)
    patches, grid, second_per_grid_t = process_video(str(path), IMAGE_OPTIONS, OPTIONS, {"nframes": 6})
    sampled = read_video(str(path), OPTIONS, {"nframes": 6})
    frames = list(resize_frames(sampled.frames, grid[1] * 14, grid[2] * 14))
    hf = transformers.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    ref = hf(images=None, videos=[frames], return_tensors="np", input_data_format="channels_last")
    assert grid == tuple(ref["video_grid_thw"][0]) == (3, 20, 28)
    assert np.abs(patches - ref["pixel_values_videos"]).max() <= 1e-6
    assert math.isclose(second_per_grid_t, 2 / sampled.sample_fps)


@pytest.mark.parametrize("size,out", [((90, 130), (140, 196)), ((64, 96), (280, 392)), ((300, 200), (56, 28)),
                                      ((77, 33), (77, 66)), ((480, 854), (252, 448)), ((720, 1280), (168, 308)),
                                      ((97, 61), (28, 364)), ((200, 90), (644, 28))])
def test_frame_resize_matches_torchvision_float_bicubic(size, out):
    # qwen-vl-utils resizes frames with torchvision: torch's antialiased bicubic on float,
    # clamped and rounded to uint8. torchvision is absent here; torch's kernel is the same.
    torch = pytest.importorskip("torch")
    frames = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    ours = resize_frames(frames, *out)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(x, size=out, mode="bicubic", antialias=True, align_corners=False)
    ref = ref.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, ref)


def test_list_of_frames_is_a_video_padded_to_even_count():
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)) for _ in range(3)]
    patches, grid, second_per_grid_t = process_video(frames, IMAGE_OPTIONS, OPTIONS, {"sample_fps": 1.0})
    # 3 frames -> 4 (last repeated) -> t = 2; per-frame size from the video budget (min 128 tokens).
    assert grid == (2,) + tuple(x // 14 for x in smart_resize(60, 80, 28, 128 * 784, 768 * 784, True))
    assert second_per_grid_t == 2.0
    assert patches.shape == (grid[0] * grid[1] * grid[2], 1176)


def test_video_defaults_follow_fps_two(tmp_path):
    path = write_video(tmp_path / "v.mp4", 90, 30)  # 3 s at 30 fps -> 6 frames at 2 fps
    patches, grid, second_per_grid_t = process_video(str(path), IMAGE_OPTIONS)
    assert grid[0] == 3 and second_per_grid_t == 1.0


def test_video_with_no_decodable_frames_is_rejected(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="cannot decode video"):
        process_video(str(bad), IMAGE_OPTIONS)


def test_video_with_one_frame_is_rejected(tmp_path):
    path = write_video(tmp_path / "one.mp4", 1, 10)
    with pytest.raises(VideoDecodeError, match="sampled frames"):
        process_video(str(path), IMAGE_OPTIONS)


def test_empty_time_range_is_rejected(tmp_path):
    path = write_video(tmp_path / "v.mp4", 20, 10)
    with pytest.raises(InputError, match="select no frames"):
        process_video(str(path), IMAGE_OPTIONS, OPTIONS, {"video_start": 1.5, "video_end": 1.0})


def test_pyav_is_used_when_decord_is_missing(tmp_path, monkeypatch):
    import builtins
    path = write_video(tmp_path / "v.mp4", 30, 10)
    expected = read_video(str(path), OPTIONS, {"nframes": 4})
    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    sampled = read_video(str(path), OPTIONS, {"nframes": 4})
    assert sampled.indices == expected.indices and np.array_equal(sampled.frames, expected.frames)


def test_video_from_data_url_equals_video_from_path(tmp_path):
    import base64
    path = write_video(tmp_path / "v.mp4", 20, 10)
    data_url = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()
    from_path = process_video(str(path), IMAGE_OPTIONS)
    from_data = process_video(data_url, IMAGE_OPTIONS)
    assert from_path[1:] == from_data[1:] and np.array_equal(from_path[0], from_data[0])


def test_video_normalisation_follows_hf_video_processor_arithmetic():
    # transformers 4.57.3 BaseVideoProcessor.rescale_and_normalize: mean/std tensors (float32)
    # times 1/rescale_factor, then torchvision F.normalize = (x - mean) / std on float32 frames.
    # torchvision is absent here, so these torch ops stand in for F.normalize.
    torch = pytest.importorskip("torch")
    frames = np.random.default_rng(0).integers(0, 256, (2, 28, 56, 3), dtype=np.uint8)
    patches, grid = frames_to_patches(frames, IMAGE_OPTIONS, fused_normalize=True)
    mean = torch.tensor(IMAGE_OPTIONS.image_mean) * (1.0 / IMAGE_OPTIONS.rescale_factor)
    std = torch.tensor(IMAGE_OPTIONS.image_std) * (1.0 / IMAGE_OPTIONS.rescale_factor)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32)
    ref = ((x - mean[:, None, None]) / std[:, None, None]).numpy().transpose(0, 2, 3, 1)
    ref_patches, ref_grid = frames_to_patches_float(ref)
    assert grid == ref_grid and np.array_equal(patches, ref_patches)


def frames_to_patches_float(frames):
    """Patchify already-normalised float frames (T, H, W, 3) with the shared patch order."""
    from paddle_qwenvl.processing.image import patchify
    return patchify(frames.transpose(0, 3, 1, 2), IMAGE_OPTIONS)


@pytest.mark.parametrize("num_frames,fps,size,part", [
    (50, 25, (64, 96), {}),
    (91, 30, (120, 160), {"fps": 1.0}),
    (40, 7.5, (90, 130), {"nframes": 6}),
    (120, 24, (360, 640), {"video_start": 1.0, "video_end": 4.0, "max_pixels": 128 * 28 * 28}),
    (30, 10, (200, 100), {"resized_height": 112, "resized_width": 56}),
    (64, 16, (72, 128), {"total_pixels": 1000 * 28 * 28, "min_pixels": 32 * 28 * 28}),
])
def test_whole_video_path_matches_qwen_vl_utils_then_hf(tmp_path, qwen_vl_utils, num_frames, fps, size, part):
    """qwen-vl-utils fetch_video (decord) + HF image processor on its frames = our process_video."""
    transformers = pytest.importorskip("transformers")
    path = write_video(tmp_path / "v.mp4", num_frames, fps, width=size[1], height=size[0])
    video, sample_fps = qwen_vl_utils.fetch_video({"video": str(path), **part}, return_video_sample_fps=True)
    frames = list(video.numpy().round().astype(np.uint8).transpose(0, 2, 3, 1))
    hf = transformers.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    ref = hf(images=None, videos=[frames], return_tensors="np", input_data_format="channels_last")
    patches, grid, second_per_grid_t = process_video(str(path), IMAGE_OPTIONS, OPTIONS, part)
    assert grid == tuple(int(x) for x in ref["video_grid_thw"][0])
    assert np.abs(patches - ref["pixel_values_videos"]).max() <= 1e-6
    assert math.isclose(second_per_grid_t, 2 / sample_fps)


def _qwen_vl_utils_frame_list(qvu, images, part):
    """fetch_video's frame-list branch with each frame fitted at factor 28.

    qwen-vl-utils 0.0.14 passes the factor (28) where fetch_image expects the patch size (14),
    so it fits list frames to multiples of 56; earlier releases (and we) use 28. This rebuilds
    the branch from its own pieces: fetch_image per frame, pad to even, the video budget, resize.
    """
    import torch
    from .conftest import _tensor_resize
    frames = [qvu.fetch_image({"image": im, **part}, image_patch_size=14) for im in images]
    frames += [frames[-1]] * (len(frames) % 2)
    video = torch.stack([torch.from_numpy(np.array(f).transpose(2, 0, 1)) for f in frames])
    min_pixels = part.get("min_pixels", 128 * 28 * 28)
    max_pixels = max(min(768 * 28 * 28, 128000 * 28 * 28 * 0.9 / len(frames) * 2), int(min_pixels * 1.05))
    max_pixels = min(part.get("max_pixels", max_pixels), max_pixels)
    height, width = qvu.smart_resize(video.shape[2], video.shape[3], 28, min_pixels, max_pixels)
    return _tensor_resize(video, [height, width]), part.get("sample_fps", 2.0)


@pytest.mark.parametrize("count,size,part", [(3, (60, 80), {}), (4, (300, 500), {"sample_fps": 1.0}),
                                             (5, (90, 130), {"max_pixels": 200 * 28 * 28})])
def test_frame_list_matches_qwen_vl_utils_then_hf(qwen_vl_utils, count, size, part):
    transformers = pytest.importorskip("transformers")
    rng = np.random.default_rng(count)
    images = [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(count)]
    video, sample_fps = _qwen_vl_utils_frame_list(qwen_vl_utils, images, part)
    frames = list(video.numpy().transpose(0, 2, 3, 1))
    hf = transformers.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    ref = hf(images=None, videos=[frames], return_tensors="np", input_data_format="channels_last")
    patches, grid, second_per_grid_t = process_video(images, IMAGE_OPTIONS, OPTIONS, part)
    assert grid == tuple(int(x) for x in ref["video_grid_thw"][0])
    assert np.abs(patches - ref["pixel_values_videos"]).max() <= 1e-6
    assert math.isclose(second_per_grid_t, 2 / sample_fps)


def test_chunked_decoding_gives_the_same_frames(tmp_path, monkeypatch):
    import paddle_qwenvl.processing.video as video_module
    path = write_video(tmp_path / "v.mp4", 60, 10)
    part = {"nframes": 18}
    whole = [reader(str(path), OPTIONS, part) for reader in (_read_decord, _read_av)]
    monkeypatch.setattr(video_module, "FRAMES_PER_CHUNK", 4)
    chunked = [reader(str(path), OPTIONS, part) for reader in (_read_decord, _read_av)]
    for a, b in zip(whole, chunked):
        assert a.indices == b.indices and np.array_equal(a.frames, b.frames) and len(b.frames) == 18
    patches_whole = process_video(str(path), IMAGE_OPTIONS, OPTIONS, part)
    monkeypatch.setattr(video_module, "FRAMES_PER_CHUNK", 16)
    assert np.array_equal(process_video(str(path), IMAGE_OPTIONS, OPTIONS, part)[0], patches_whole[0])


def test_numpy_frame_array_is_a_video_like_a_frame_list():
    frames = np.random.default_rng(3).integers(0, 256, (4, 50, 70, 3), dtype=np.uint8)
    from_array = process_video(frames, IMAGE_OPTIONS)
    from_list = process_video([Image.fromarray(f) for f in frames], IMAGE_OPTIONS)
    assert from_array[1:] == from_list[1:] and np.array_equal(from_array[0], from_list[0])


@pytest.mark.parametrize("total,fps,part,expected", [
    (90, 30.0, {}, 6),              # 3 s at 2 fps
    (8, 2.0, {}, 8),                # 4 s at 2 fps = every frame
    (10, 30.0, {}, 4),              # 1/3 s: raised to FPS_MIN_FRAMES = 4
    (3, 30.0, {}, 2),               # fewer than 4 frames: the even count that fits
    (2000, 25.0, {}, 160),          # 80 s at 2 fps
    (100000, 25.0, {}, 768),        # capped at FPS_MAX_FRAMES
    (100, 25.0, {"nframes": 7}, 8),  # nframes rounded to even: round(3.5) = 4 -> 8
    (100, 25.0, {"nframes": 5}, 4),  # round(2.5) = 2 (half to even) -> 4
    (300, 30.0, {"fps": 0.5, "min_frames": 7}, 8),  # min_frames rounded up to even
])
def test_smart_nframes_hand_computed(total, fps, part, expected):
    assert smart_nframes(total, fps, OPTIONS, part) == expected


def test_frame_range_and_indices_hand_computed():
    assert frame_range(30, 10.0, {"video_start": 0.5, "video_end": 1.7}) == (5, 17, 13)
    assert frame_range(30, 10.0, {"video_end": 99}) == (0, 29, 30)  # clamped to the video
    assert sample_indices(0, 89, 6) == [0, 18, 36, 53, 71, 89]      # 17.8, 35.6, 53.4, 71.2
