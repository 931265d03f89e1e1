"""Draws the bundled demo image and video (run once; the outputs are committed).

    python -m paddle_qwenvl.assets.make_assets

demo.jpg: 448x336 scene (sky, sun, hills, a red house, a tree), ~20 KB.
demo.mp4: 2 s at 8 fps, 224x168 H.264: a ball crossing the same scene, ~20 KB.
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def draw_scene(width: int, height: int, ball_x: float = None) -> Image.Image:
    """The scene scaled to (width, height); a yellow ball at fraction ball_x of the width."""
    s = width / 448
    img = Image.new("RGB", (width, height))
    sky = np.linspace([90, 160, 235], [200, 225, 250], height).astype(np.uint8)     # (H, 3)
    img.paste(Image.fromarray(np.repeat(sky[:, None, :], width, axis=1)))
    d = ImageDraw.Draw(img)
    d.ellipse([360 * s, 30 * s, 410 * s, 80 * s], fill=(255, 215, 60))                # sun
    d.polygon([(0, 240 * s), (150 * s, 170 * s), (300 * s, 230 * s), (448 * s, 180 * s),
               (448 * s, height), (0, height)], fill=(70, 150, 70))                    # hills
    d.rectangle([120 * s, 190 * s, 220 * s, 270 * s], fill=(190, 40, 40))             # house
    d.polygon([(110 * s, 190 * s), (170 * s, 140 * s), (230 * s, 190 * s)], fill=(110, 60, 40))
    d.rectangle([160 * s, 230 * s, 180 * s, 270 * s], fill=(80, 50, 30))              # door
    d.rectangle([300 * s, 200 * s, 312 * s, 260 * s], fill=(100, 70, 40))             # trunk
    d.ellipse([275 * s, 150 * s, 337 * s, 215 * s], fill=(40, 110, 40))               # crown
    if ball_x is not None:
        x = ball_x * width
        d.ellipse([x - 14 * s, 280 * s, x + 14 * s, 308 * s], fill=(250, 230, 0))
    return img


def write_video(path: Path, width: int = 224, height: int = 168, fps: int = 8, seconds: int = 2):
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "30"}
        n = fps * seconds
        for i in range(n):
            frame = av.VideoFrame.from_image(draw_scene(width, height, ball_x=0.1 + 0.8 * i / (n - 1)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main():
    draw_scene(448, 336).save(HERE / "demo.jpg", quality=85)
    write_video(HERE / "demo.mp4")
    for name in ("demo.jpg", "demo.mp4"):
        print(name, (HERE / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
