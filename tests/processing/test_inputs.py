"""Image/video sources and the specific error each kind of bad input raises."""
import base64
import http.server
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from paddle_qwenvl.processing.errors import (
    ImageLoadError, ImageTooLargeError, InputError, SourceFetchError, UnsupportedSourceError)
from paddle_qwenvl.processing.image import load_image
from paddle_qwenvl.processing.sources import FetchOptions, resolve


def _png_bytes(height=40, width=60):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def http_server():
    """A local server: /img.png, /big (2 MB), /slow (answers after 3 s)."""
    png = _png_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow":
                time.sleep(3)
            body = {"/img.png": png, "/big": b"\0" * (2 << 20)}.get(self.path, b"")
            try:
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout / size limit), as intended

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", png
    server.shutdown()


def test_http_image_is_downloaded(http_server):
    base, png = http_server
    assert resolve(f"{base}/img.png") == png
    assert load_image(f"{base}/img.png").size == (60, 40)


def test_http_download_limits(http_server):
    base, _ = http_server
    with pytest.raises(SourceFetchError, match="exceeds max_bytes"):
        resolve(f"{base}/big", FetchOptions(max_bytes=1 << 20))
    with pytest.raises(SourceFetchError, match="could not download"):
        resolve(f"{base}/slow", FetchOptions(timeout=0.5))
    with pytest.raises(SourceFetchError, match="could not download"):
        resolve(f"{base}/missing.png")
    with pytest.raises(UnsupportedSourceError, match="allow_remote=False"):
        resolve(f"{base}/img.png", FetchOptions(allow_remote=False))


@pytest.mark.parametrize("source", ["ftp://host/a.png", "s3://bucket/a.png", "gs://b/c.jpg"])
def test_unsupported_scheme(source):
    with pytest.raises(UnsupportedSourceError, match="unsupported URL scheme"):
        load_image(source)


def test_data_url_must_be_base64():
    with pytest.raises(UnsupportedSourceError, match="base64"):
        load_image("data:image/png,rawbytes")
    with pytest.raises(SourceFetchError, match="invalid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")
    assert load_image("data:image/png;base64," + base64.b64encode(_png_bytes()).decode()).size == (60, 40)


def test_missing_file():
    with pytest.raises(SourceFetchError, match="file not found"):
        load_image("/nonexistent/dir/a.png")
    with pytest.raises(SourceFetchError, match="file not found"):
        load_image("file:///nonexistent/dir/a.png")


def test_non_image_bytes(tmp_path):
    (tmp_path / "notes.png").write_text("this is plain text, not a picture\n" * 10)
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(str(tmp_path / "notes.png"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(buffer, fmt)
    (tmp_path / "cut").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(str(tmp_path / "cut"))


def test_decompression_bomb_beyond_pixel_limit(tmp_path):
    # 12000 x 12000 one-bit PNG: a few KB on disk, 144 M pixels decoded.
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLargeError, match="max_input_pixels"):
        load_image(str(tmp_path / "bomb.png"))
    # The limit is an option: a small one rejects ordinary images too, before decoding.
    with pytest.raises(ImageTooLargeError, match="2400 pixels, more than max_input_pixels=1000"):
        load_image(_png_bytes(40, 60), max_input_pixels=1000)


def test_pil_decompression_bomb_error_is_reported_as_too_large(tmp_path):
    # Beyond twice PIL's own limit PIL refuses at open(); we report it the same way.
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb2.png")
    with pytest.raises(ImageTooLargeError):
        load_image(str(tmp_path / "bomb2.png"), max_input_pixels=10**9)


@pytest.mark.parametrize("array", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
                                   np.zeros((2, 10, 10, 3), np.uint8)])
def test_bad_numpy_images(array):
    with pytest.raises(InputError, match="numpy images must be uint8"):
        load_image(array)


def test_grayscale_and_rgba_numpy_images_become_rgb():
    assert load_image(np.zeros((10, 12), np.uint8)).mode == "RGB"
    assert load_image(np.zeros((10, 12, 4), np.uint8)).mode == "RGB"
