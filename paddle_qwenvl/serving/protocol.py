"""OpenAI chat-completions requests to our messages and SamplingParams, and our outputs back to
OpenAI's response and chunk objects. Plain dicts: no web framework here."""
import dataclasses
import time
import uuid
from typing import List, Optional

from ..sampling import SamplingParams
from .tool_parser import parse_tool_calls

PROCESSOR_FIELDS = ("min_pixels", "max_pixels", "fps")      # extra body fields, as vLLM accepts them


class RequestError(ValueError):
    """A request the server refuses: an OpenAI error body with `status`."""

    def __init__(self, message: str, status: int = 400, param: Optional[str] = None,
                 type_: str = "invalid_request_error", code: Optional[str] = None):
        super().__init__(message)
        self.status, self.param, self.type, self.code = status, param, type_, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def to_messages(messages, policy) -> list:
    """OpenAI chat messages -> the Processor's messages (text, image and video parts; tool messages
    and assistant tool_calls kept for tools.fold_tools); `policy` (media.MediaPolicy) checks, and
    fetches, every image and video source."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}] needs a role of system, user, assistant or tool",
                               param=f"messages[{i}].role")
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            content = [_part(part, f"messages[{i}].content[{j}]", policy) for j, part in enumerate(content)]
        out.append({"role": message["role"], "content": content})
        if message["role"] == "assistant" and message.get("tool_calls"):
            out[-1]["tool_calls"] = message["tool_calls"]
    return out


def _part(part, param: str, policy) -> dict:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind in ("image_url", "video_url"):
        url = (part.get(kind) or {}).get("url") if isinstance(part.get(kind), dict) else part.get(kind)
        name = kind.split("_")[0]
        return {"type": name, name: policy.check(url, f"{param}.{kind}.url")}
    if kind == "video" and isinstance(part.get("video"), list):          # Qwen's list of frames
        return {"type": "video", "video": [policy.check(f, f"{param}.video[{k}]") for k, f in
                                           enumerate(part["video"])]}
    raise RequestError(f"{param}: unsupported content part type {kind!r}; use text, image_url, video_url "
                       "or video (a list of frame URLs)", param=param)


def sampling_params(body: dict, default: SamplingParams, constraint=None) -> List[SamplingParams]:
    """One SamplingParams per choice (n of them; seeded choices get seed, seed + 1, ...); each
    choice's request makes its own TokenConstraint with `constraint` (e.g. a grammar)."""
    fields = dict(temperature="temperature", top_p="top_p", top_k="top_k", min_p="min_p", seed="seed",
                  presence_penalty="presence_penalty", frequency_penalty="frequency_penalty",
                  repetition_penalty="repetition_penalty")
    changes = {ours: body[theirs] for theirs, ours in fields.items() if body.get(theirs) is not None}
    if body.get("ignore_eos"):                     # vLLM's extra field (benchmarks: a fixed answer length)
        changes["ignore_eos"] = True
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    if body.get("stop") is not None:
        changes["stop"] = body["stop"]
    if constraint is not None:
        changes["constraint"] = constraint
    if body.get("logprobs"):
        changes["logprobs"] = body.get("top_logprobs") or 0
    elif body.get("top_logprobs") is not None:
        raise RequestError("top_logprobs needs logprobs: true", param="top_logprobs")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
        raise RequestError(f"n must be an integer in [1, 16], got {n!r}", param="n")
    try:
        params = dataclasses.replace(default, **changes)
    except (TypeError, ValueError) as exc:
        raise RequestError(str(exc)) from exc
    if params.seed is None:
        return [params] * n
    return [dataclasses.replace(params, seed=params.seed + i) for i in range(n)]


def processor_options(body: dict) -> dict:
    return {k: body[k] for k in PROCESSOR_FIELDS if body.get(k) is not None}


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(outputs) -> dict:
    prompt = outputs[0].usage.prompt_tokens
    completion = sum(o.usage.completion_tokens for o in outputs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": outputs[0].usage.cached_tokens}}


def logprobs_content(out, tokenizer, start: int = 0) -> Optional[dict]:
    if out.logprobs is None:
        return None
    piece = lambda t: tokenizer.decode([t], skip_special_tokens=False)          # noqa: E731
    return {"content": [{"token": piece(lp.token_id), "logprob": lp.logprob, "bytes": None,
                         "top_logprobs": [{"token": piece(t), "logprob": v, "bytes": None} for t, v in lp.top]}
                        for lp in out.logprobs[start:]]}


def completion(request_id: str, model: str, outputs, tokenizer, parse_tools: bool = False) -> dict:
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [dict(_message(out, parse_tools), index=i, logprobs=logprobs_content(out, tokenizer))
                        for i, out in enumerate(outputs)],
            "usage": usage(outputs)}


def _message(out, parse_tools: bool) -> dict:
    """A choice's message and finish_reason; with parse_tools, <tool_call> blocks become tool_calls."""
    if not parse_tools:
        return {"message": {"role": "assistant", "content": out.text}, "finish_reason": out.finish_reason}
    content, calls = parse_tool_calls(out.text)
    message = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
    return {"message": message, "finish_reason": finish_reason_of(out.finish_reason, bool(calls))}


def finish_reason_of(reason: str, called: bool) -> str:
    """OpenAI's "tool_calls" for an answer that stopped after calling tools."""
    return "tool_calls" if called and reason == "stop" else reason


def chunk(request_id: str, model: str, created: int, index: int, delta: dict, finish_reason=None,
          logprobs=None) -> dict:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}]}
