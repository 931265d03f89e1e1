"""Shared fixtures: a tiny model directory, generated videos, qwen-vl-utils as a reference."""
import importlib
import importlib.util
import sys
import types
from fractions import Fraction

import numpy as np
import pytest

from paddle_qwenvl.tools.tiny_tokenizer import write_processor_files


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Tokenizer + preprocessor files of a Qwen2.5-VL-style directory (small max_pixels)."""
    out = tmp_path_factory.mktemp("tiny_qwen2_5_vl")
    ids = write_processor_files(str(out), "qwen2_5_vl", max_pixels=64 * 28 * 28)
    return out, ids


def write_video(path, num_frames, fps, width=96, height=64):
    """An H.264 mp4 whose frame i is filled with a distinct level, so frames are identifiable."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, :, 0] = (i * 5) % 256
            image[:, : width // 2, 1] = 255 - (i * 3) % 256
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _tensor_resize(video, size, interpolation="bicubic", antialias=True):
    """torchvision.transforms.functional.resize on a uint8 tensor, as torchvision 0.2x does it:
    cast to float, torch's interpolate, clamp (bicubic), round, cast back."""
    import torch
    out = torch.nn.functional.interpolate(video.float(), size=list(size), mode=interpolation,
                                          align_corners=False, antialias=antialias)
    return out.clamp(0, 255).round().to(video.dtype) if video.dtype == torch.uint8 else out


def _fake_torchvision():
    # qwen-vl-utils imports torchvision at module level; torchvision is not installed here.
    # Its decord reader and frame rules do not use torchvision; fetch_video's frame resize
    # does, and gets the same float computation from torch itself.
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0.0"
    tv.io = types.ModuleType("torchvision.io")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    tv.transforms.functional.resize = _tensor_resize
    return {"torchvision": tv, "torchvision.io": tv.io, "torchvision.transforms": tv.transforms,
            "torchvision.transforms.functional": tv.transforms.functional}


@pytest.fixture(scope="session")
def qwen_vl_utils():
    """qwen_vl_utils.vision_process (pip install qwen-vl-utils), or skip."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("qwen_vl_utils") is None:
        pytest.skip("qwen-vl-utils is not installed (pip install qwen-vl-utils)")
    fakes = {} if importlib.util.find_spec("torchvision") else _fake_torchvision()
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        module = importlib.import_module("qwen_vl_utils.vision_process")
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module
