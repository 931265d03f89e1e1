"""Sampling parameters of one request (what `generate` takes; the engine's sampler applies them).

Semantics follow HF transformers (repetition penalty over prompt + output tokens; temperature,
top_k, top_p, min_p warpers in that order) and OpenAI (presence/frequency penalties over output
tokens). temperature == 0 means greedy.
"""
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Protocol, Union

import numpy as np

MAX_LOGPROBS = 20        # alternatives per token, as OpenAI's top_logprobs allows


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class TokenConstraint(Protocol):
    """One request's own limit on which tokens may come next (a grammar's state, say)."""

    def allowed(self, vocab_size: int) -> Optional[np.ndarray]:
        """(vocab_size,) bool, True where a token may come next; None: any token may."""

    def advance(self, token_id: int) -> None:
        """The token that was sampled."""


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    min_new_tokens: int = 0            # EOS and stop ids are masked until this many tokens exist
    temperature: float = 1.0           # 0 -> greedy
    top_k: int = 0                     # 0 -> off
    top_p: float = 1.0                 # 1 -> off
    min_p: float = 0.0                 # 0 -> off
    repetition_penalty: float = 1.0    # HF: over prompt + output tokens
    presence_penalty: float = 0.0      # OpenAI: over output tokens
    frequency_penalty: float = 0.0
    seed: Optional[int] = None         # fixes this request's draws whatever the batch holds
    stop: Union[str, List[str]] = field(default_factory=list)       # stop strings (cut from text)
    stop_token_ids: List[int] = field(default_factory=list)         # besides the model's EOS
    ignore_eos: bool = False
    logprobs: Optional[int] = None     # per generated token: its log-probability and this many
                                       # most likely alternatives (0-20); None: none
    constraint: Optional[Callable[[], TokenConstraint]] = None     # makes each request's own
                                       # TokenConstraint (n choices get one each); None: unconstrained

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids)
        self._check_ints()
        self._check_floats()
        self._check_lists()

    def _check_ints(self):
        _require(_is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
                 "max_new_tokens must be an integer >= 1", self.max_new_tokens)
        _require(_is_int(self.min_new_tokens) and 0 <= self.min_new_tokens <= self.max_new_tokens,
                 f"min_new_tokens must be an integer in [0, max_new_tokens={self.max_new_tokens}]",
                 self.min_new_tokens)
        _require(_is_int(self.top_k) and self.top_k >= 0, "top_k must be an integer >= 0 (0 = off)",
                 self.top_k)
        _require(self.seed is None or _is_int(self.seed), "seed must be an integer or None", self.seed)

    def _check_floats(self):
        checks = [("temperature", lambda v: v >= 0, "must be >= 0 (0 = greedy)"),
                  ("top_p", lambda v: 0 < v <= 1, "must be in (0, 1]"),
                  ("min_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
                  ("repetition_penalty", lambda v: v > 0, "must be > 0 (1 = off)"),
                  ("presence_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]"),
                  ("frequency_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]")]
        for name, ok, rule in checks:
            value = getattr(self, name)
            _require(_is_number(value) and np.isfinite(value) and ok(value), f"{name} {rule}", value)

    def _check_lists(self):
        _require(all(isinstance(s, str) and s for s in self.stop),
                 "stop must be a non-empty string or a list of them", self.stop)
        _require(all(_is_int(t) and t >= 0 for t in self.stop_token_ids),
                 "stop_token_ids must be a list of token ids >= 0", self.stop_token_ids)
        _require(isinstance(self.ignore_eos, bool), "ignore_eos must be True or False", self.ignore_eos)
        _require(self.logprobs is None or (_is_int(self.logprobs) and 0 <= self.logprobs <= MAX_LOGPROBS),
                 f"logprobs must be None or an integer in [0, {MAX_LOGPROBS}]", self.logprobs)
        _require(self.constraint is None or callable(self.constraint),
                 "constraint must be None or a callable that makes a TokenConstraint", self.constraint)

    @classmethod
    def from_generation_config(cls, config: dict, **overrides) -> "SamplingParams":
        """The sampling HF `generate()` does with this generation_config.json: greedy unless
        do_sample; when sampling, HF's defaults (temperature 1, top_k 50, top_p 1) fill the gaps."""
        get = lambda key, default: default if config.get(key) is None else config[key]   # null = unset
        values = {"repetition_penalty": float(get("repetition_penalty", 1.0))}
        if config.get("do_sample"):
            values.update(temperature=float(get("temperature", 1.0)), top_k=int(get("top_k", 50)),
                          top_p=float(get("top_p", 1.0)), min_p=float(get("min_p", 0.0)))
        else:
            values["temperature"] = 0.0
        if config.get("max_new_tokens"):
            values["max_new_tokens"] = int(config["max_new_tokens"])
        return cls(**dict(values, **overrides))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_penalties(self) -> bool:
        return (self.repetition_penalty != 1 or self.presence_penalty != 0
                or self.frequency_penalty != 0)


def _require(ok: bool, rule: str, value) -> None:
    if not ok:
        raise ValueError(f"{rule}, got {value!r}")
