"""The OpenAI-compatible HTTP app: /v1/chat/completions (plain and streamed), /v1/models, /health,
/metrics. Every request joins the engine's continuous batching; a stream whose client goes away
aborts its requests."""
import contextlib
import hmac
import json
import time

import anyio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from .grammar import Grammars
from .guidance import guidance
from .metrics import Metrics
from .media import MediaPolicy
from .protocol import (RequestError, chunk, completion, finish_reason_of, logprobs_content, new_id,
                       processor_options, sampling_params, to_messages, usage)
from .tool_parser import ToolCallStream
from .tools import fold_tools

MAX_BODY_BYTES = 64 << 20           # a request body over this answers 413


def create_app(predictor, model_name: str, api_key: str = None, media: MediaPolicy = MediaPolicy(),
               max_waiting: int = 64) -> FastAPI:
    """The app over `predictor`. A chat request arriving while `max_waiting` requests already wait
    for a place in the batch is answered 503 with Retry-After."""
    app = FastAPI(title="paddle-qwenvl", docs_url=None, redoc_url=None)
    metrics = Metrics(predictor.engine)
    tokenizer = predictor.processor.tokenizer
    grammars = Grammars(tokenizer, predictor.engine.eos_ids)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/v1/") and api_key is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error(RequestError("missing or wrong API key: send 'Authorization: Bearer KEY'", 401,
                                          type_="authentication_error", code="invalid_api_key"))
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return error(RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", 413))
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "paddle-qwenvl"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await _json_body(request)
            if body.get("model") not in (None, model_name):
                raise RequestError(f"model {body.get('model')!r} is not served here; use {model_name!r}", 404,
                                   param="model", code="model_not_found")
            waiting = len(predictor.engine.scheduler.waiting)
            if waiting >= max_waiting:
                raise RequestError(f"the server is busy: {waiting} requests are waiting; retry shortly", 503,
                                   type_="server_busy", code="queue_full")
            guide = await run_in_threadpool(guidance, body, grammars, tokenizer)
            params = sampling_params(body, predictor.default_sampling, guide.constraint)
            inputs = await run_in_threadpool(_prepare, predictor, body.get("messages"), media, guide.tools,
                                             processor_options(body))
        except RequestError as exc:
            metrics.finished("error")
            return error(exc)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _stream(predictor, inputs, params, model_name, include_usage, metrics, tokenizer,
                             guide.parse_tools)
            # the background task runs once the response ends, finished or cut off by the client
            return StreamingResponse(_in_threads(events), media_type="text/event-stream",
                                     background=BackgroundTask(events.close))
        start = time.perf_counter()
        try:
            outputs = await run_in_threadpool(predictor.engine.generate, [inputs] * len(params), params)
        except ValueError as exc:
            metrics.finished("error")
            return error(RequestError(str(exc)))
        metrics.observe(outputs, time.perf_counter() - start)
        return completion(new_id(), model_name, outputs, tokenizer, guide.parse_tools)

    return app


def _sse(obj) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def error(exc: RequestError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", 413)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def _prepare(predictor, messages, media, tools, options):
    """OpenAI messages -> PromptInputs (remote media fetched here, in a worker thread; tools folded
    in as Qwen writes them); a bad image, video or context length is the client's error."""
    messages = fold_tools(to_messages(messages, media), tools)
    try:
        inputs = predictor.prepare(messages, **options)
    except (ValueError, TypeError) as exc:
        raise RequestError(str(exc)) from None
    limit = predictor.engine.config.max_model_len
    if len(inputs.input_ids) >= limit:
        raise RequestError(f"the prompt has {len(inputs.input_ids)} tokens; this server's context is {limit}: "
                           "shorten the messages or use smaller images / videos", param="messages",
                           code="context_length_exceeded")
    return inputs


def _stream(predictor, inputs, params, model, include_usage, metrics, tokenizer, parse_tools):
    """Server-sent events: a role chunk per choice, content (or tool call) deltas, a finish chunk,
    usage, [DONE].
    A sync generator (starlette runs it in a thread): closing it aborts the requests."""
    request_id, created, start = new_id(), int(time.time()), time.perf_counter()
    try:
        ids = predictor.engine.add_requests([inputs] * len(params), params)
    except ValueError as exc:
        metrics.finished("error")
        yield _sse(RequestError(str(exc)).body())
        return
    index = {rid: i for i, rid in enumerate(ids)}
    seen, finals, marks = {rid: 0 for rid in ids}, {}, {"start": start}
    parsers = {rid: ToolCallStream() for rid in ids} if parse_tools else {}
    outputs = predictor.engine.follow(ids)
    with contextlib.closing(outputs):            # closed early (client gone): the requests are aborted
        for i in range(len(ids)):
            yield _sse(chunk(request_id, model, created, i, {"role": "assistant", "content": ""}))
        yield from _chunks(outputs, request_id, model, created, index, seen, finals, tokenizer, marks, parsers)
    outputs = [finals[rid] for rid in ids]
    metrics.observe(outputs, time.perf_counter() - start, marks.get("first"))
    if include_usage:
        yield _sse({"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage(outputs)})
    yield "data: [DONE]\n\n"


def _chunks(outputs, request_id, model, created, index, seen, finals, tokenizer, marks, parsers):
    """Content (or tool call) and finish chunks of the choices' outputs as they come; marks["first"]:
    seconds from marks["start"] to the first output; parsers: a ToolCallStream per request when
    tool calls are parsed."""
    for out in outputs:
        marks.setdefault("first", time.perf_counter() - marks["start"])
        logprobs = logprobs_content(out, tokenizer, seen[out.request_id])
        seen[out.request_id] = len(out.token_ids)
        parser = parsers.get(out.request_id)
        deltas = _deltas(out, parser) or ([{"content": ""}] if logprobs else [])
        for k, delta in enumerate(deltas):
            yield _sse(chunk(request_id, model, created, index[out.request_id], delta,
                             logprobs=logprobs if k == 0 else None))
        if out.finished:
            finals[out.request_id] = out
            reason = finish_reason_of(out.finish_reason, parser is not None and parser.calls > 0)
            yield _sse(chunk(request_id, model, created, index[out.request_id], {}, reason))


def _deltas(out, parser) -> list:
    """The message deltas an output adds: its text, or what the tool call parser makes of it."""
    if parser is None:
        return [{"content": out.delta}] if out.delta else []
    return parser.push(out.delta) + (parser.finish() if out.finished else [])


async def _in_threads(events):
    """Each next() of a blocking event generator in a worker thread. When the client goes away the
    response is cancelled and the generator is closed (here, shielded from the cancellation, or by
    the response's background task if this wrapper was left suspended): that aborts its requests
    and frees their blocks at once."""
    try:
        while True:
            item = await run_in_threadpool(next, events, None)
            if item is None:
                return
            yield item
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(events.close)
