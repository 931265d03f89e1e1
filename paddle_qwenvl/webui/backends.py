"""Where the page's answers come from: a Predictor in this process, or a running server
(serving.client.RemoteChat). Both stream `Answer`s: the text so far, then the final stats."""
import dataclasses
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from ..sampling import SamplingParams


@dataclass
class Settings:
    """The page's sampling controls. seed None: a fresh draw each time."""
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    seed: Optional[int] = None


@dataclass
class AnswerStats:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft: float                    # seconds from sending to the first text
    tokens_per_second: float       # generated tokens after the first, over the time they took
    finish_reason: Optional[str]

    def line(self) -> str:
        return (f"prompt {self.prompt_tokens} tokens ({self.cached_tokens} cached) · generated "
                f"{self.completion_tokens} tokens · TTFT {self.ttft:.2f} s · {self.tokens_per_second:.1f} tokens/s"
                f" · finish: {self.finish_reason}")


@dataclass
class Answer:
    text: str
    stats: Optional[AnswerStats] = None     # set on the last one


class LocalBackend:
    """A Predictor loaded in this process."""

    def __init__(self, predictor):
        self.predictor = predictor

    def defaults(self) -> Settings:
        s = self.predictor.default_sampling
        return Settings(s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.seed)

    def stream(self, messages: list, settings: Settings) -> Iterator[Answer]:
        sampling = dataclasses.replace(self.predictor.default_sampling, **dataclasses.asdict(settings))
        return timed(self.predictor.stream(messages, sampling), _local_counts)


class RemoteBackend:
    """A running OpenAI-compatible server, through the `chat --api-base` client."""

    def __init__(self, remote_chat):
        self.remote = remote_chat

    def defaults(self) -> Settings:
        s = SamplingParams(temperature=0.0, max_new_tokens=512)
        return Settings(s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.seed)

    def stream(self, messages: list, settings: Settings) -> Iterator[Answer]:
        fields = dict(max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                      top_p=settings.top_p, top_k=settings.top_k, seed=settings.seed)
        request = {k: v for k, v in fields.items() if v is not None}
        return timed(self.remote.stream(messages, request), _remote_counts)


def timed(outputs, counts) -> Iterator[Answer]:
    """Answers from a stream of outputs (RequestOutput or RemoteOutput), timed from now.
    Closing it closes `outputs` (which aborts the request)."""
    start, first, out = time.perf_counter(), None, None
    try:
        for out in outputs:
            if out.text and first is None:
                first = time.perf_counter()
            if not out.finished:
                yield Answer(out.text)
    finally:
        outputs.close()
    end = time.perf_counter()
    prompt, completion, cached = counts(out)
    first = first or end
    rate = (completion - 1) / (end - first) if completion > 1 and end > first else 0.0
    yield Answer(out.text, AnswerStats(prompt, completion, cached, first - start, rate, out.finish_reason))


def _local_counts(out):
    return out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.cached_tokens


def _remote_counts(out):
    usage = out.usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), cached
