"""A load generator for any OpenAI-compatible chat server (as vLLM's benchmark_serving measures one):
M streamed requests, each a fresh random image and a prompt of about P words, sent N at a time or
as a Poisson process of R requests/s. Per request: time to first token (TTFT), the gaps between
streamed chunks (inter-token latency, ITL), time per output token after the first (TPOT) and
end-to-end latency. Needs httpx (the bench extra)."""
import asyncio
import base64
import io
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

WORDS = ("the", "house", "red", "tree", "sky", "blue", "green", "water", "light", "stone", "road", "city",
         "river", "cloud", "window", "door", "garden", "bird", "table", "paper")      # one token each


@dataclass
class Load:
    """What to send, and how fast."""
    num_requests: int = 32
    concurrency: Optional[int] = None          # requests in flight at most (None: no bound)
    request_rate: Optional[float] = None       # requests/s, Poisson arrivals (None: all at once)
    image_size: Optional[Tuple[int, int]] = (448, 448)    # (W, H); None: text only
    prompt_tokens: int = 64
    max_tokens: int = 64
    ignore_eos: bool = False                   # vLLM's extra field: always max_tokens tokens
    logprobs: bool = False                     # ask for logprobs: a chunk then marks every token,
                                               # even one whose text is empty (random weights)
    seed: int = 0


@dataclass
class RequestResult:
    ok: bool
    error: str = ""
    ttft: float = float("nan")                 # seconds
    latency: float = float("nan")
    itl: List[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0


def request_body(load: Load, index: int, model: str) -> dict:
    """Request `index` of the load: its own random image (no cache hit) and words."""
    rng = np.random.default_rng(load.seed * 100003 + index)
    text = " ".join(rng.choice(WORDS, load.prompt_tokens)) + "\nDescribe the image."
    content = [{"type": "text", "text": text}]
    if load.image_size:
        content.insert(0, {"type": "image_url", "image_url": {"url": _random_jpeg(rng, load.image_size)}})
    body = dict(model=model, messages=[{"role": "user", "content": content}], max_tokens=load.max_tokens,
                temperature=0.0, stream=True, stream_options={"include_usage": True})
    if load.logprobs:
        body["logprobs"] = True
    return dict(body, ignore_eos=True) if load.ignore_eos else body


def _carries_token(choice: dict) -> bool:
    """A streamed choice with new text, or with a generated token's logprobs."""
    return bool(choice.get("delta", {}).get("content") or (choice.get("logprobs") or {}).get("content"))


def _random_jpeg(rng, size: Tuple[int, int]) -> str:
    from PIL import Image
    width, height = size
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


async def _send(client, url: str, headers: dict, body: dict) -> RequestResult:
    import httpx
    start, chunk_times, usage = time.perf_counter(), [], {}
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return RequestResult(False, f"HTTP {response.status_code}: {text[:160]}")
            async for line in response.aiter_lines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if not data or data == "[DONE]":
                    continue
                event = json.loads(data)
                if "error" in event:
                    return RequestResult(False, str(event["error"].get("message", event["error"]))[:160])
                usage = event.get("usage") or usage
                if any(_carries_token(c) for c in event.get("choices", [])):
                    chunk_times.append(time.perf_counter())
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return RequestResult(False, f"{type(exc).__name__}: {exc}"[:160])
    if not chunk_times:
        return RequestResult(False, "the stream carried no text")
    return RequestResult(True, ttft=chunk_times[0] - start, latency=time.perf_counter() - start,
                         itl=list(np.diff(chunk_times)), prompt_tokens=usage.get("prompt_tokens", 0),
                         output_tokens=usage.get("completion_tokens", len(chunk_times)))


async def _run(api_base: str, headers: dict, bodies: List[dict], load: Load, timeout: float):
    import httpx
    url = api_base.rstrip("/") + "/chat/completions"
    gate = asyncio.Semaphore(load.concurrency) if load.concurrency else None
    arrivals = random.Random(load.seed)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=None)) as client:
        async def one(body):
            if gate is None:
                return await _send(client, url, headers, body)
            async with gate:
                return await _send(client, url, headers, body)
        start, tasks = time.perf_counter(), []
        for body in bodies:
            tasks.append(asyncio.create_task(one(body)))
            if load.request_rate:
                await asyncio.sleep(arrivals.expovariate(load.request_rate))
        results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - start


def served_model(api_base: str, headers: dict, timeout: float = 30.0) -> str:
    """The first model the server lists (GET /models)."""
    import httpx
    try:
        response = httpx.get(api_base.rstrip("/") + "/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"cannot reach {api_base}: {exc}") from None
    models = response.json().get("data") if response.status_code == 200 else None
    if not models:
        raise ValueError(f"{api_base}/models answered {response.status_code} with no model; pass --model NAME")
    return models[0]["id"]


def run_load(api_base: str, load: Load, model: str, api_key: Optional[str] = None, timeout: float = 600.0):
    """(results, seconds) of one load against the server."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    bodies = [request_body(load, i, model) for i in range(load.num_requests)]
    return asyncio.run(_run(api_base, headers, bodies, load, timeout))


def percentiles(values) -> Optional[dict]:
    """mean, p50, p90, p99 in milliseconds (None for no values)."""
    values = np.asarray([v for v in values if v == v], dtype=np.float64) * 1000
    if values.size == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return dict(mean=float(values.mean()), p50=float(p50), p90=float(p90), p99=float(p99))


def summarize(results: List[RequestResult], seconds: float) -> dict:
    ok = [r for r in results if r.ok]
    output, prompt = sum(r.output_tokens for r in ok), sum(r.prompt_tokens for r in ok)
    return dict(completed=len(ok), failed=len(results) - len(ok), seconds=seconds,
                errors=dict(Counter(r.error for r in results if not r.ok).most_common(5)),
                request_throughput=len(ok) / seconds, output_token_throughput=output / seconds,
                total_token_throughput=(output + prompt) / seconds,
                prompt_tokens_mean=prompt / len(ok) if ok else None,
                output_tokens_mean=output / len(ok) if ok else None,
                ttft_ms=percentiles(r.ttft for r in ok),
                tpot_ms=percentiles((r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1),
                itl_ms=percentiles(gap for r in ok for gap in r.itl),
                e2e_ms=percentiles(r.latency for r in ok))
