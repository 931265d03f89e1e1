"""`paddle-qwenvl webui` on loopback with a tiny checkpoint, used in headless Chromium as a person
would: upload the demo image, ask, read the streamed answer; a broken upload; stop; reset."""
import pytest

from paddle_qwenvl.cli.common import DEMO_IMAGE

from .chat_page import ChatPage, chromium, free_port, start, webui_command
from .conftest import _env

pytest.importorskip("gradio")
pytest.importorskip("selenium")
MAX_NEW_TOKENS = 12
QUESTION, FOLLOW_UP = "What is shown?", "What colour is the sky?"


@pytest.fixture(scope="module")
def page_url(tiny_models, tmp_path_factory):
    port = free_port()
    env = _env(tmp_path_factory.mktemp("webui-cache"), compiled_ops=True)
    env.pop("PADDLE_QWENVL_CACHE")          # the kernels this process builds for `predictor`, not a second build
    env["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("webui-uploads"))
    url = f"http://127.0.0.1:{port}/"
    proc = start(webui_command("--model", tiny_models["qwen2_5_vl"], "--port", port, "--max-model-len", 4096),
                 url, env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def predictor(tiny_models):
    from paddle_qwenvl import Predictor
    return Predictor.from_pretrained(tiny_models["qwen2_5_vl"], progress=False, max_model_len=1024)


@pytest.fixture
def page(page_url):
    driver = chromium()
    try:
        chat = ChatPage(driver, page_url)
        chat.set_number("temperature", 0)
        chat.set_number("max_new_tokens", MAX_NEW_TOKENS)
        yield chat
    finally:
        driver.quit()


def greedy(predictor, messages, max_new_tokens=MAX_NEW_TOKENS):
    from paddle_qwenvl import SamplingParams
    return predictor.generate(messages, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))


def user(text, image=None):
    return {"role": "user", "content": ([{"type": "image", "image": str(image)}] if image else [])
            + [{"type": "text", "text": text}]}


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

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    page.attach(broken)
    page.ask("And this one?")
    page.wait_for(lambda: "not an image" in page.text("#error"), "the bad upload's error")
    assert "broken.jpg" in page.text("#error")
    assert len(page.answers()) == 1

    page.find("#message textarea").clear()
    page.ask(FOLLOW_UP)
    second = greedy(predictor, [user(QUESTION, DEMO_IMAGE), {"role": "assistant", "content": first.text},
                                user(FOLLOW_UP)])
    assert page.wait_for_answer(2) == second.text.strip()
    assert page.text("#error") == ""
    page.driver.save_screenshot(str(tmp_path / "webui.png"))
    assert (tmp_path / "webui.png").stat().st_size > 10_000


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
