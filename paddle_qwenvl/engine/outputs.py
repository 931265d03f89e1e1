"""What `generate` returns per request."""
from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class Timings:
    """Seconds spent on this request. Batched steps are shared, so prefill/decode are wall times
    of the steps the request took part in."""
    vision: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0         # prompt tokens whose KV blocks came from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class RequestOutput:
    request_id: str
    text: str                      # output so far (final: cut before a stop string)
    token_ids: List[int]           # generated ids, including a final EOS / stop id
    finished: bool
    finish_reason: Optional[str]   # "stop", "length", "abort" or None while running
    usage: Usage
    timings: Timings = field(default_factory=Timings)
    delta: str = ""                # text added since the previous output of this request
    logprobs: Optional[list] = None   # engine.sampler.TokenLogprob per token (SamplingParams.logprobs)
