"""Time preprocessing of a 1280x720 image (and optionally the vision tower on its patches).

    python scripts/bench_preprocess.py                  # preprocessing only
    python scripts/bench_preprocess.py --vision-depth 2 # + a real-size Qwen2-VL ViT cut to 2 blocks,
                                                        #   extrapolated to its 32 blocks
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_qwenvl.processing import Processor
from paddle_qwenvl.tools.timing import median_seconds
from paddle_qwenvl.tools.tiny_tokenizer import write_processor_files


def _test_image(path):
    # A smooth gradient with noise, like a photo: JPEG decode cost is realistic.
    y, x = np.mgrid[0:720, 0:1280]
    rgb = np.stack([x * 255 // 1279, y * 255 // 719, (x + y) % 256], axis=-1)
    noise = np.random.default_rng(0).integers(-20, 20, rgb.shape)
    Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return Image.open(path).convert("RGB")


def bench_preprocess(work, repeats):
    write_processor_files(str(work), "qwen2_vl")  # published limits: 3136..12845056 pixels
    processor = Processor.from_pretrained(str(work))
    image = _test_image(work / "img.jpg")
    message = lambda src: [{"role": "user", "content": [{"type": "image", "image": src},
                                                        {"type": "text", "text": "Describe."}]}]
    out = processor(message(image))
    decoded = median_seconds(lambda: processor(message(image)), repeats)
    from_file = median_seconds(lambda: processor(message(str(work / "img.jpg"))), repeats)
    print(f"1280x720 -> grid_thw {out.image_grid_thw[0]}, pixel_values {out.pixel_values.shape}, "
          f"{len(out.input_ids)} tokens")
    print(f"preprocess (PIL image in): {decoded * 1e3:.1f} ms median of {repeats}")
    print(f"preprocess (JPEG path in): {from_file * 1e3:.1f} ms median of {repeats}")
    return out, decoded


def _test_video(path, seconds=4, fps=30):
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        y, x = np.mgrid[0:720, 0:1280]
        for i in range(seconds * fps):
            rgb = np.stack([(x + 4 * i) % 256, y * 255 // 719, (x + y + i) % 256], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def bench_video(work, repeats):
    processor = Processor.from_pretrained(str(work))
    _test_video(work / "clip.mp4")
    message = [{"role": "user", "content": [{"type": "video", "video": str(work / "clip.mp4")},
                                            {"type": "text", "text": "Describe."}]}]
    out = processor(message)
    seconds = median_seconds(lambda: processor(message), repeats)
    print(f"1280x720 4 s 30 fps video -> grid_thw {out.video_grid_thw[0]}, "
          f"{out.pixel_values_videos.shape[0]} patches: {seconds * 1e3:.1f} ms median of {repeats}")


def bench_vision(work, out, depth, preprocess_seconds):
    import paddle
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.tools.tiny import make_preset_checkpoint
    model_dir = make_preset_checkpoint(work / "vit", "qwen2-vl-2b", num_layers=1, vision_depth=depth,
                                       dtype="float32", progress=False)
    model = load_model(str(model_dir), progress=False)
    pixels = paddle.to_tensor(out.pixel_values)
    seconds = median_seconds(lambda: model.get_image_features(pixels, out.image_grid_thw), 1)
    full = seconds / depth * 32  # Qwen2-VL's ViT has 32 blocks; patch embed + merger are small
    print(f"vision tower, {depth} of 32 blocks: {seconds:.2f} s -> ~{full:.1f} s for all 32 "
          f"(threads: paddle default)")
    print(f"preprocessing / vision tower = {preprocess_seconds / full:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vision-depth", type=int, default=0, help="0: skip the vision tower")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out, seconds = bench_preprocess(Path(tmp), args.repeats)
        bench_video(Path(tmp), args.repeats)
        if args.vision_depth:
            bench_vision(Path(tmp), out, args.vision_depth, seconds)


if __name__ == "__main__":
    main()
