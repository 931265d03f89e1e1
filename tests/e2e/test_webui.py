"""`paddle-qwenvl webui` on loopback with a tiny checkpoint, used in headless Chromium as a person
would: upload the demo image, ask, read the streamed answer; a broken upload; stop; reset."""
import struct
import zlib

import pytest
from PIL import Image

from paddle_qwenvl.assets.make_assets import write_video
from paddle_qwenvl.cli.common import DEMO_IMAGE, DEMO_VIDEO

from .chat_page import ChatPage, chromium, free_port, serve_command, start, webui_command
from .conftest import _env, assert_clean_error

pytest.importorskip("gradio")
pytest.importorskip("selenium")
MAX_NEW_TOKENS = 12
QUESTION, FOLLOW_UP = "What is shown?", "What colour is the sky?"


def page_env(tmp_path_factory) -> dict:
    """Quiet, one thread, the compiled kernels this process builds for `predictor` (not a second
    build in a private cache), uploads kept in a temp dir."""
    env = _env(tmp_path_factory.mktemp("webui-cache"), compiled_ops=True)
    env.pop("PADDLE_QWENVL_CACHE")
    env["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("webui-uploads"))
    return env


@pytest.fixture(scope="module")
def page_url(tiny_models, tmp_path_factory):
    port, env = free_port(), page_env(tmp_path_factory)
    url = f"http://127.0.0.1:{port}/"
    proc = start(webui_command("--model", tiny_models["qwen2_5_vl"], "--port", port, "--max-model-len", 4096),
                 url, env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def remote_page_url(tiny_models, tmp_path_factory):
    """The page as a client of `paddle-qwenvl serve` (both on loopback)."""
    api_port, page_port, env = free_port(), free_port(), page_env(tmp_path_factory)
    server = start(serve_command("--model", tiny_models["qwen2_5_vl"], "--port", api_port, "--max-model-len", 1024),
                   f"http://127.0.0.1:{api_port}/health", env)
    url = f"http://127.0.0.1:{page_port}/"
    try:
        page = start(webui_command("--api-base", f"http://127.0.0.1:{api_port}/v1", "--port", page_port), url, env)
        yield url
        page.terminate()
        page.wait(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def predictor(tiny_models):
    from paddle_qwenvl import Predictor
    return Predictor.from_pretrained(tiny_models["qwen2_5_vl"], progress=False, max_model_len=1024)


@pytest.fixture
def browser():
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url) -> ChatPage:
    """The page in `driver`, set to greedy decoding of MAX_NEW_TOKENS tokens."""
    chat = ChatPage(driver, url)
    chat.set_number("temperature", 0)
    chat.set_number("max_new_tokens", MAX_NEW_TOKENS)
    return chat


@pytest.fixture
def page(browser, page_url):
    return open_page(browser, page_url)


def greedy(predictor, messages, max_new_tokens=MAX_NEW_TOKENS):
    from paddle_qwenvl import SamplingParams
    return predictor.generate(messages, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))


def user(text, image=None):
    return {"role": "user", "content": ([{"type": "image", "image": str(image)}] if image else [])
            + [{"type": "text", "text": text}]}


def ask_about_a_broken_file(page, tmp_path):
    """Attaches a .jpg that is not an image, asks, and waits for the page's error."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    page.attach(broken)
    page.ask("And this one?")
    page.wait_for(lambda: "not an image" in page.text("#error"), "the bad upload's error")


def test_image_question_streams_the_predictors_answer_and_a_bad_upload_is_only_an_error(
        page, predictor, tmp_path):
    assert all(url.startswith(page.url) for url in page.resources())      # nothing from the internet
    page.attach(DEMO_IMAGE)
    page.ask(QUESTION)
    first = greedy(predictor, [user(QUESTION, DEMO_IMAGE)])
    assert page.wait_for_answer(1) == first.text.strip()      # gradio shows messages stripped
    stats = page.text("#stats")
    assert f"prompt {first.usage.prompt_tokens} tokens" in stats
    assert f"generated {first.usage.completion_tokens} tokens" in stats
    assert "TTFT" in stats and "tokens/s" in stats

    ask_about_a_broken_file(page, tmp_path)
    assert "broken.jpg" in page.text("#error")
    assert len(page.answers()) == 1

    page.find("#message textarea").clear()
    page.ask(FOLLOW_UP)
    second = greedy(predictor, [user(QUESTION, DEMO_IMAGE), {"role": "assistant", "content": first.text},
                                user(FOLLOW_UP)])
    assert page.wait_for_answer(2) == second.text.strip()
    assert second.usage.cached_tokens > 0            # the first turn's KV blocks, from the prefix cache
    assert f"prompt {second.usage.prompt_tokens} tokens ({second.usage.cached_tokens} cached)" in page.text("#stats")
    assert page.text("#error") == ""
    page.driver.save_screenshot(str(tmp_path / "webui.png"))
    assert (tmp_path / "webui.png").stat().st_size > 10_000


def pixel_bomb(path):
    """A PNG whose header claims 30000 x 30000 pixels (900 M) around 1 pixel of data."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30000, 30000)                 # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_pixel_bomb_and_a_too_long_video_are_errors_and_the_chat_goes_on(page, predictor, tmp_path):
    page.attach(pixel_bomb(tmp_path / "bomb.png"))
    page.ask(QUESTION)
    page.wait_for(lambda: "900000000 pixels" in page.text("#error"), "the pixel bomb's error")
    write_video(tmp_path / "long.mp4", fps=2, seconds=60)       # ~8000 prompt tokens; the page holds 4096
    page.find("#message textarea").clear()
    page.attach(tmp_path / "long.mp4")
    page.ask(QUESTION)
    page.wait_for(lambda: "max_model_len=4096" in page.text("#error"), "the long video's error")
    assert "long.mp4" in page.text("#error") and page.answers() == []
    page.find("#message textarea").clear()
    page.attach(DEMO_IMAGE, DEMO_VIDEO)                            # several files in one message
    page.ask(FOLLOW_UP)
    both = user(FOLLOW_UP, DEMO_IMAGE)
    both["content"].insert(1, {"type": "video", "video": str(DEMO_VIDEO)})
    assert page.wait_for_answer(1) == greedy(predictor, [both]).text.strip()
    assert page.text("#error") == ""


def test_stop_then_reset_starts_a_new_conversation(page, predictor):
    page.set_number("max_new_tokens", 4000)         # long enough to be running when Stop is clicked
    page.ask(QUESTION)
    page.wait_for(lambda: page.answers() and page.answers()[-1].strip(), "the answer starting")
    page.find("#stop").click()
    page.wait_for(lambda: page.text("#stats") == "stopped", "the stopped state")
    page.find("#reset").click()
    page.wait_for(lambda: not page.answers(), "an empty conversation")
    page.set_number("max_new_tokens", MAX_NEW_TOKENS)
    page.ask(FOLLOW_UP)
    assert page.wait_for_answer(1) == greedy(predictor, [user(FOLLOW_UP)]).text.strip()


def test_with_api_base_the_page_asks_the_server(browser, remote_page_url, predictor, tmp_path):
    page = open_page(browser, remote_page_url)
    page.attach(DEMO_IMAGE)
    page.ask(QUESTION)
    want = greedy(predictor, [user(QUESTION, DEMO_IMAGE)])
    assert page.wait_for_answer(1) == want.text.strip()
    assert f"prompt {want.usage.prompt_tokens} tokens" in page.text("#stats")
    ask_about_a_broken_file(page, tmp_path)
    assert "the server answered 400" in page.text("#error")
    assert len(page.answers()) == 1


def test_model_and_api_base_together_are_refused(cli, tiny_models):
    result = cli("webui", "--model", tiny_models["qwen2_5_vl"], "--api-base", "http://127.0.0.1:9/v1")
    assert_clean_error(result, "either --model", "--api-base")


def test_an_unreachable_api_base_is_one_error_line(cli):
    assert_clean_error(cli("webui", "--api-base", "http://127.0.0.1:9/v1"), "cannot reach http://127.0.0.1:9/v1")
