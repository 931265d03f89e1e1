"""A chat client of a running `paddle-qwenvl serve` (or any OpenAI-compatible server), for
`paddle-qwenvl chat --api-base URL`: local images and videos go as data: URLs, answers stream back.
Standard library only."""
import base64
import json
import mimetypes
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator, Optional


@dataclass
class RemoteOutput:
    """What the chat loop reads of a streamed answer, as it reads a RequestOutput."""
    delta: str = ""
    text: str = ""
    finished: bool = False
    finish_reason: Optional[str] = None
    usage: dict = field(default_factory=dict)


class RemoteChat:
    def __init__(self, api_base: str, api_key: Optional[str] = None, model: Optional[str] = None,
                 timeout: float = 600.0):
        self.api_base, self.api_key, self.timeout = api_base.rstrip("/"), api_key, timeout
        self.model = model or self._first_model()

    def _request(self, path: str, body: Optional[dict] = None):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_base + path, data=data, headers=headers,
                                         method="GET" if body is None else "POST")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise ValueError(f"the server answered {exc.code}: {_error_message(exc)}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(f"cannot reach {self.api_base}: {exc.reason}") from None

    def _first_model(self) -> str:
        with self._request("/models") as response:
            models = json.loads(response.read()).get("data") or []
        if not models:
            raise ValueError(f"{self.api_base}/models lists no model")
        return models[0]["id"]

    def stream(self, messages: list, sampling: dict) -> Iterator[RemoteOutput]:
        """Streams one answer; `sampling` holds OpenAI request fields (max_tokens, temperature, ...)."""
        body = dict(sampling, model=self.model, messages=[_openai_message(m) for m in messages], stream=True,
                    stream_options={"include_usage": True})
        out = RemoteOutput()
        with self._request("/chat/completions", body) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise ValueError(event["error"].get("message", "the server reported an error"))
                out.usage = event.get("usage") or out.usage
                for choice in event.get("choices", []):
                    out.delta = choice.get("delta", {}).get("content") or ""
                    out.text += out.delta
                    out.finish_reason = choice.get("finish_reason") or out.finish_reason
                    yield out
        out.delta, out.finished = "", True
        yield out


def _error_message(exc) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)


def _openai_message(message: dict) -> dict:
    """Our chat message (image / video parts naming files) -> OpenAI's (parts with data: URLs)."""
    content = message["content"]
    if isinstance(content, str):
        return dict(message)
    parts = []
    for part in content:
        kind = part["type"]
        if kind in ("image", "video"):
            parts.append({"type": f"{kind}_url", f"{kind}_url": {"url": _data_url(part[kind], kind)}})
        else:
            parts.append(part)
    return {"role": message["role"], "content": parts}


def _data_url(source, kind: str) -> str:
    if not isinstance(source, str) or source.startswith(("data:", "http://", "https://")):
        return source
    mime = mimetypes.guess_type(source)[0] or ("image/jpeg" if kind == "image" else "video/mp4")
    with open(source, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()
