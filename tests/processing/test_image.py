"""Images: grid_thw and pixel values identical to HF transformers' Qwen2VLImageProcessor (slow)."""
import numpy as np
import pytest
from PIL import Image

from paddle_qwenvl.processing.errors import AspectRatioError, InputError
from paddle_qwenvl.processing.image import ImageOptions, load_image, process_image, smart_resize

transformers = pytest.importorskip("transformers")

SMALL_MAX = 64 * 28 * 28  # keeps the reference fast; limits are what the tests exercise


def _random_image(height, width, mode="RGB", seed=0):
    rng = np.random.default_rng(seed + height * 7919 + width)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
        return Image.merge("RGBA", (*rgb.split(), alpha))
    if mode == "P":
        return rgb.quantize(colors=37)
    return rgb if mode == "RGB" else rgb.convert(mode)


def _hf(image, min_pixels, max_pixels):
    processor = transformers.Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    # channels_last: HF guesses the channel axis otherwise, and guesses wrong for 1- or 3-row images.
    out = processor(images=[image], return_tensors="np", input_data_format="channels_last")
    return out["pixel_values"], tuple(int(x) for x in out["image_grid_thw"][0])


def _ours(image, min_pixels, max_pixels, part=None):
    options = ImageOptions(min_pixels=min_pixels, max_pixels=max_pixels)
    return process_image(load_image(image), options, part)


SIZES = [
    (1, 1), (1, 200), (200, 1), (3, 3), (13, 13), (14, 14), (27, 29), (28, 28), (29, 27),
    (55, 57), (56, 56), (57, 55), (7, 1000), (101, 37), (224, 224), (225, 224), (223, 225),
    (240, 320), (320, 240), (480, 64), (64, 480), (333, 517), (1000, 9),
]


@pytest.mark.parametrize("height,width", SIZES)
def test_matches_hf_on_sizes(height, width):
    image = _random_image(height, width)
    ref_pixels, ref_grid = _hf(image, 3136, SMALL_MAX)
    pixels, grid = _ours(image, 3136, SMALL_MAX)
    assert grid == ref_grid
    assert pixels.dtype == np.float32 and pixels.shape == ref_pixels.shape == (np.prod(grid), 1176)
    assert np.abs(pixels - ref_pixels).max() <= 1e-6


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "1", "I;16"])
def test_matches_hf_on_image_modes(mode):
    image = _random_image(90, 130, mode=mode)
    ref_pixels, ref_grid = _hf(image, 3136, SMALL_MAX)
    pixels, grid = _ours(image, 3136, SMALL_MAX)
    assert grid == ref_grid
    assert np.abs(pixels - ref_pixels).max() <= 1e-6


def test_matches_hf_with_published_limits_and_numpy_input():
    array = np.asarray(_random_image(300, 500))
    ref_pixels, ref_grid = _hf(array, 3136, 12845056)
    pixels, grid = _ours(array, 3136, 12845056)
    assert grid == ref_grid == (1, 22, 36)
    assert np.abs(pixels - ref_pixels).max() <= 1e-6


def test_per_image_pixel_limits_match_hf_called_with_those_limits():
    image = _random_image(400, 600)
    ref_pixels, ref_grid = _hf(image, 3136, 16 * 28 * 28)
    pixels, grid = _ours(image, 3136, SMALL_MAX, part={"max_pixels": 16 * 28 * 28})
    assert grid == ref_grid
    assert np.abs(pixels - ref_pixels).max() <= 1e-6


def test_resized_height_width_snaps_to_grid_and_resizes_once():
    image = _random_image(400, 600)
    pixels, grid = _ours(image, 3136, SMALL_MAX, part={"resized_height": 100, "resized_width": 150})
    assert grid == (1, 8, 10)  # (112, 140) = nearest multiples of 28
    # Reference pipeline: qwen-vl-utils resizes to (112, 140) with PIL bicubic, then HF.
    ref_pixels, ref_grid = _hf(image.resize((140, 112), Image.BICUBIC), 3136, SMALL_MAX)
    assert ref_grid == grid and np.abs(pixels - ref_pixels).max() <= 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_smart_resize_agrees_with_hf_and_respects_limits(seed):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize
    rng = np.random.default_rng(seed)
    for _ in range(500):
        height, width = (int(x) for x in rng.integers(1, 5000, size=2))
        if max(height, width) / min(height, width) > 200:
            continue
        min_pixels, max_pixels = 3136, int(rng.choice([SMALL_MAX, 1280 * 28 * 28, 12845056]))
        ref = hf_smart_resize(height, width, 28, min_pixels, max_pixels)
        if ref[0] * ref[1] > max_pixels:
            # HF exceeds max_pixels for thin images whose short side is clamped up to 28; we refuse.
            with pytest.raises(InputError, match="within max_pixels"):
                smart_resize(height, width, 28, min_pixels, max_pixels)
            continue
        h, w = smart_resize(height, width, 28, min_pixels, max_pixels)
        assert (h, w) == ref
        assert h % 28 == 0 and w % 28 == 0 and min_pixels <= h * w <= max_pixels


def test_smart_resize_examples():
    assert smart_resize(720, 1280, 28, 3136, 12845056) == (728, 1288)
    assert smart_resize(42, 42, 28, 3136, 12845056) == (56, 56)  # round(1.5)=2 -> 56 (half to even)
    assert smart_resize(70, 70, 28, 3136, 12845056) == (56, 56)  # round(2.5)=2 (half to even)


def test_aspect_ratio_over_200_is_rejected():
    assert smart_resize(1, 200, 28, 3136, SMALL_MAX)
    with pytest.raises(AspectRatioError, match="aspect ratio must be at most 200"):
        _ours(_random_image(1, 201), 3136, SMALL_MAX)


def test_limits_that_cannot_be_met_raise_instead_of_exceeding_max_pixels():
    # HF would return 28x2660 = 74480 > max_pixels here.
    with pytest.raises(InputError, match="within max_pixels"):
        smart_resize(24, 3414, 28, min_pixels=3136, max_pixels=50176)
    with pytest.raises(InputError, match="within max_pixels"):
        smart_resize(30, 1000, 28, min_pixels=50000, max_pixels=50176)
    with pytest.raises(InputError, match="larger than max_pixels"):
        smart_resize(100, 100, 28, min_pixels=5000, max_pixels=4000)
