"""`paddle-qwenvl serve` on loopback with a tiny checkpoint, driven with the official openai client."""
import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from paddle_qwenvl.cli.common import DEMO_IMAGE

from .conftest import _env

openai = pytest.importorskip("openai")
KEY = "test-key"
NAME = "tiny-qwen2.5-vl"
QUESTION = "What is shown?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    port = free_port()
    cache = tmp_path_factory.mktemp("serve-cache")
    proc = subprocess.Popen([sys.executable, "-m", "paddle_qwenvl.cli", "serve", "--model", str(tiny_models["qwen2_5_vl"]),
                             "--port", str(port), "--api-key", KEY, "--served-model-name", NAME,
                             "--max-model-len", "1024", "--max-num-seqs", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(cache, compiled_ops=True))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stdout.read()}")
            try:
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail("the server did not come up within 300 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def predictor(tiny_models):
    from paddle_qwenvl import Predictor
    return Predictor.from_pretrained(tiny_models["qwen2_5_vl"], progress=False, max_model_len=1024)


def idle_metrics(server, seconds: float = 60) -> str:
    """/metrics once nothing runs and no KV block is in use (or after `seconds`)."""
    deadline = time.time() + seconds
    while True:
        metrics = urllib.request.urlopen(server + "/metrics", timeout=10).read().decode()
        idle = "pqv_running_requests 0.0" in metrics and "pqv_kv_blocks_used 0.0" in metrics
        if idle or time.time() > deadline:
            return metrics
        time.sleep(0.2)


def data_url(path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(open(path, "rb").read()).decode()


def image_message():
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(DEMO_IMAGE)}},
                                         {"type": "text", "text": QUESTION}]}]


def expected(predictor, with_image=True, **kw):
    from paddle_qwenvl import SamplingParams
    content = ([{"type": "image", "image": str(DEMO_IMAGE)}] if with_image else []) + [{"type": "text", "text": QUESTION}]
    return predictor.generate([{"role": "user", "content": content}],
                              SamplingParams(**dict(dict(temperature=0, max_new_tokens=8), **kw)))


def test_text_and_image_answers_equal_the_predictor(client, predictor):
    text = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                          temperature=0, max_tokens=8)
    assert text.choices[0].message.content == expected(predictor, with_image=False).text
    got = client.chat.completions.create(model=NAME, messages=image_message(), temperature=0, max_tokens=8)
    want = expected(predictor)
    assert got.choices[0].message.content == want.text
    assert got.choices[0].finish_reason == want.finish_reason
    assert got.usage.prompt_tokens == want.usage.prompt_tokens
    assert got.usage.completion_tokens == want.usage.completion_tokens


def test_streamed_deltas_add_up_to_the_answer_with_usage_last(client, predictor):
    stream = client.chat.completions.create(model=NAME, messages=image_message(), temperature=0, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected(predictor).text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_n_choices_with_a_seed_and_logprobs(client):
    got = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                         temperature=1.0, seed=3, n=2, max_tokens=5, logprobs=True, top_logprobs=2)
    again = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                           temperature=1.0, seed=3, n=2, max_tokens=5, logprobs=True, top_logprobs=2)
    assert len(got.choices) == 2 and [c.index for c in got.choices] == [0, 1]
    assert [c.message.content for c in got.choices] == [c.message.content for c in again.choices]
    for choice in got.choices:
        assert len(choice.logprobs.content) == 5
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in choice.logprobs.content)


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == [NAME]
    metrics = urllib.request.urlopen(server + "/metrics", timeout=10).read().decode()
    assert 'pqv_requests_total{status="ok"}' in metrics and "pqv_kv_blocks_used 0.0" in metrics


@pytest.mark.parametrize("kwargs,status,fragment", [
    (dict(model="other"), 404, "is not served here"),
    (dict(temperature=-1), 400, "temperature must be >= 0"),
    (dict(n=99), 400, "n must be an integer in [1, 16]"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url",
                                                    "image_url": {"url": "http://127.0.0.1/x.png"}}]}]),
     400, "resolves to a non-public address (127.0.0.1)"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]),
     400, "local files are not served"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url",
                                                    "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
     400, "image"),
    (dict(messages=[{"role": "user", "content": "word " * 2000}]), 400, "this server's context is 1024"),
])
def test_bad_requests_get_openai_errors(client, kwargs, status, fragment):
    args = dict(dict(model=NAME, messages=[{"role": "user", "content": QUESTION}], max_tokens=4), **kwargs)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**args)
    assert info.value.status_code == status
    assert fragment in info.value.body["message"]


def test_missing_or_wrong_key_and_malformed_json(server):
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])
    request = urllib.request.Request(server + "/v1/chat/completions", data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 400
    assert "not valid JSON" in json.loads(info.value.read())["error"]["message"]


def test_a_client_that_goes_away_frees_its_request(server, client):
    stream = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                            temperature=1.0, seed=1, max_tokens=900, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    metrics = idle_metrics(server)
    assert "pqv_running_requests 0.0" in metrics and "pqv_kv_blocks_used 0.0" in metrics
    # the server goes on serving
    assert client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).choices[0].finish_reason in ("stop", "length")


def test_a_full_waiting_queue_answers_503_with_retry_after(predictor):
    """In process: one request waits (nobody steps the engine), the limit is one: the next is 503."""
    from fastapi.testclient import TestClient

    from paddle_qwenvl.engine.inputs import PromptInputs
    from paddle_qwenvl.sampling import SamplingParams
    from paddle_qwenvl.serving.app import create_app
    app = create_app(predictor, NAME, max_waiting=1)
    rid = predictor.engine.add_request(PromptInputs([5, 6, 7]), SamplingParams(max_new_tokens=2))
    try:
        response = TestClient(app).post("/v1/chat/completions",
                                        json={"model": NAME, "messages": [{"role": "user", "content": "hi"}]})
    finally:
        predictor.engine.abort(rid)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "queue_full"


def test_32_concurrent_streams_a_quarter_cut_off(server, client):
    """A bounded loopback load: every finished answer is its request's answer alone (greedy), none
    lost or mixed; the cut-off ones free their blocks; the server stays healthy."""
    import threading
    prompts = [f"Question number {i}: what is in the picture?" for i in range(32)]
    ask = lambda p: dict(model=NAME, messages=[{"role": "user", "content": p}], temperature=0, max_tokens=12)  # noqa: E731
    alone = [client.chat.completions.create(**ask(p)).choices[0].message.content for p in prompts]
    results, errors = [None] * len(prompts), []

    def worker(i):
        try:
            stream = client.chat.completions.create(stream=True, **ask(prompts[i]))
            text = ""
            for n, part in enumerate(stream):
                if i % 4 == 0 and n == 2:            # a quarter go away mid-answer
                    stream.close()
                    return
                text += (part.choices[0].delta.content or "") if part.choices else ""
            results[i] = text
        except Exception as exc:                    # noqa: BLE001 (reported below)
            errors.append(f"{i}: {exc!r}")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    finished = [i for i in range(len(prompts)) if i % 4]
    assert [results[i] for i in finished] == [alone[i] for i in finished]
    assert urllib.request.urlopen(server + "/health", timeout=10).status == 200
    metrics = idle_metrics(server)
    assert "pqv_kv_blocks_used 0.0" in metrics and "pqv_waiting_requests 0.0" in metrics


def test_chat_command_talks_to_the_server(server, cli, predictor):
    result = cli("chat", "--api-base", server + "/v1", "--api-key", KEY, "--temperature", "0",
                 "--max-new-tokens", "8", "--image", str(DEMO_IMAGE), stdin=f"{QUESTION}\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == "assistant> " + expected(predictor).text
    bad = cli("chat", "--api-base", "http://127.0.0.1:9/v1", stdin="hi\n")
    assert bad.returncode != 0 and "cannot reach http://127.0.0.1:9/v1" in bad.stderr


@pytest.fixture(scope="module")
def media_site():
    """A loopback HTTP server: /demo.jpg, /big (over any small limit), /hop (a redirect to /demo.jpg),
    /host (the Host header it was sent)."""
    import http.server
    import threading
    image = DEMO_IMAGE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/demo.jpg")
                self.end_headers()
                return
            body = {"/demo.jpg": image, "/host": self.headers["Host"].encode()}.get(self.path, b"x" * 5000)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_remote_media_fetched_with_limits_only_where_allowed(predictor, media_site):
    from fastapi.testclient import TestClient

    from paddle_qwenvl.serving.app import create_app
    from paddle_qwenvl.serving.media import MediaPolicy

    def ask(app, url):
        body = {"model": NAME, "temperature": 0, "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]}]}
        return TestClient(app).post("/v1/chat/completions", json=body)
    public_only = create_app(predictor, NAME)
    refused = ask(public_only, media_site + "/demo.jpg")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "private_address"
    private = create_app(predictor, NAME, media=MediaPolicy(allow_private=True, max_bytes=1 << 20))
    for path in ("/demo.jpg", "/hop"):                      # direct, and through a redirect
        got = ask(private, media_site + path)
        assert got.status_code == 200 and got.json()["choices"][0]["message"]["content"] == expected(predictor).text
    small = create_app(predictor, NAME, media=MediaPolicy(allow_private=True, max_bytes=1000))
    assert "is over 1000 bytes" in ask(small, media_site + "/big").json()["error"]["message"]


def test_a_redirect_to_a_private_address_is_not_followed():
    import urllib.request

    from paddle_qwenvl.serving.media import MediaPolicy, _CheckedRedirects
    from paddle_qwenvl.serving.protocol import RequestError
    handler = _CheckedRedirects(MediaPolicy(), "messages[0].content[0]")
    request = urllib.request.Request("https://example.com/a.jpg")
    for target in ("http://127.0.0.1/x.jpg", "http://10.0.0.1/x.jpg", "http://[::1]/x.jpg"):
        with pytest.raises(RequestError, match="non-public address"):
            handler.redirect_request(request, None, 302, "Found", {}, target)
    with pytest.raises(RequestError, match="is not followed"):
        handler.redirect_request(request, None, 302, "Found", {}, "file:///etc/passwd")


def test_a_fetch_connects_to_the_address_it_checked(monkeypatch):
    """DNS rebinding: the name answers a public address first and loopback afterwards; the fetch
    resolves once and connects to the address it checked."""
    from paddle_qwenvl.serving.media import MediaPolicy
    from paddle_qwenvl.serving.protocol import RequestError
    answers, connected = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"]), []

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port or 0))]

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("no network in this test")
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(RequestError, match="could not fetch"):
        MediaPolicy().fetch("http://media.example/a.jpg", "p")
    assert connected == [("93.184.216.34", 80)]
    assert next(answers) == "127.0.0.1"                     # exactly one answer was used


def test_a_pinned_fetch_keeps_the_host_name(monkeypatch, media_site):
    """The connection goes to the checked address; the request still names the URL's host."""
    from paddle_qwenvl.serving.media import MediaPolicy
    port = media_site.rsplit(":", 1)[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **k: real("127.0.0.1" if host == "media.test" else host, *a, **k))
    assert MediaPolicy(allow_private=True).fetch(f"http://media.test:{port}/host", "p") == f"media.test:{port}".encode()
