"""Sampling parameters per request, and logits processing for a batch with per-row parameters.

Semantics follow HF transformers (repetition penalty over prompt + output tokens; temperature,
top_k, top_p, min_p warpers in that order) and OpenAI (presence/frequency penalties over output
tokens). temperature == 0 means greedy.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence as Seq, Union

import numpy as np
import paddle
import paddle.nn.functional as F

NEG_INF = float("-inf")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


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


def make_generator(params: SamplingParams) -> np.random.Generator:
    """A request's own random stream: seeded ones reproduce regardless of batch composition."""
    return np.random.default_rng(params.seed)


@dataclass
class SamplingRow:
    """What the sampler needs about one row of the logits batch."""
    params: SamplingParams
    prompt_ids: Seq[int]
    output_ids: Seq[int]
    generator: np.random.Generator
    stop_ids: Seq[int] = ()          # masked while fewer than min_new_tokens were generated


def _column(rows, fn, dtype="float32") -> paddle.Tensor:
    return paddle.to_tensor(np.array([fn(r) for r in rows], dtype=dtype)).unsqueeze(1)   # (B, 1)


def _token_mask(id_lists, vocab: int) -> np.ndarray:
    """(B, V) bool, True at the ids of each row's list."""
    mask = np.zeros((len(id_lists), vocab), dtype=bool)
    for i, ids in enumerate(id_lists):
        mask[i, np.asarray(ids, dtype=np.int64)] = True
    return mask


def apply_penalties(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    """Repetition (HF: divide positive, multiply negative logits of every prompt or output token),
    then presence/frequency (OpenAI: subtract over output token counts). logits (B, V)."""
    if not any(r.params.uses_penalties for r in rows):
        return logits
    vocab = logits.shape[1]
    seen = paddle.to_tensor(_token_mask([list(r.prompt_ids) + list(r.output_ids) for r in rows], vocab))
    rep = _column(rows, lambda r: r.params.repetition_penalty)
    penalized = paddle.where(logits > 0, logits / rep, logits * rep)
    logits = paddle.where(seen, penalized, logits)
    counts = np.zeros((len(rows), vocab), dtype=np.float32)
    for i, r in enumerate(rows):
        np.add.at(counts[i], np.asarray(r.output_ids, dtype=np.int64), 1.0)
    counts = paddle.to_tensor(counts)
    freq = _column(rows, lambda r: r.params.frequency_penalty)
    pres = _column(rows, lambda r: r.params.presence_penalty)
    return logits - freq * counts - pres * (counts > 0).astype("float32")


def mask_min_new_tokens(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    """Stop ids get -inf in rows that have fewer than min_new_tokens outputs."""
    masked = [r.stop_ids if len(r.output_ids) < r.params.min_new_tokens else [] for r in rows]
    if not any(len(ids) for ids in masked):
        return logits
    mask = _token_mask(masked, logits.shape[1])
    return paddle.where(paddle.to_tensor(mask), paddle.full_like(logits, NEG_INF), logits)


def apply_temperature(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    return logits / _column(rows, lambda r: r.params.temperature or 1.0)


def top_k_mask(logits: paddle.Tensor, top_k: List[int]) -> paddle.Tensor:
    """HF: remove logits below the k-th largest (ties with it kept). k = 0 keeps all."""
    vocab = logits.shape[1]
    ks = np.array([min(k, vocab) if k > 0 else vocab for k in top_k], dtype=np.int64)
    ordered = paddle.sort(logits, axis=-1, descending=True)
    kth = paddle.take_along_axis(ordered, paddle.to_tensor(ks - 1).unsqueeze(1), axis=-1)   # (B, 1)
    return paddle.where(logits < kth, paddle.full_like(logits, NEG_INF), logits)


def top_p_mask(logits: paddle.Tensor, top_p: List[float]) -> paddle.Tensor:
    """HF: in ascending order, remove tokens whose cumulative probability is <= 1 - top_p,
    always keeping the most likely one."""
    order = paddle.argsort(logits, axis=-1)                                   # ascending
    cum = paddle.cumsum(F.softmax(paddle.take_along_axis(logits, order, axis=-1), axis=-1), axis=-1)
    p = paddle.to_tensor(np.array(top_p, dtype=np.float32)).unsqueeze(1)
    remove_sorted = (cum <= 1 - p).astype("int32")
    remove_sorted[:, -1] = 0
    remove = paddle.put_along_axis(paddle.zeros_like(remove_sorted), order, remove_sorted, axis=-1)
    return paddle.where(remove.astype("bool"), paddle.full_like(logits, NEG_INF), logits)


def min_p_mask(logits: paddle.Tensor, min_p: List[float]) -> paddle.Tensor:
    """HF: remove tokens whose probability is below min_p times the top probability."""
    probs = F.softmax(logits, axis=-1)
    floor = paddle.to_tensor(np.array(min_p, dtype=np.float32)).unsqueeze(1) * probs.max(-1, keepdim=True)
    return paddle.where(probs < floor, paddle.full_like(logits, NEG_INF), logits)


def process_logits(logits: paddle.Tensor, rows: List[SamplingRow]):
    """-> (processed logits for greedy rows, warped logits for sampled rows), both (B, V)."""
    logits = mask_min_new_tokens(apply_penalties(logits, rows), rows)
    warped = apply_temperature(logits, rows)
    if any(r.params.top_k > 0 for r in rows):
        warped = top_k_mask(warped, [r.params.top_k for r in rows])
    if any(r.params.top_p < 1 for r in rows):
        warped = top_p_mask(warped, [r.params.top_p for r in rows])
    if any(r.params.min_p > 0 for r in rows):
        warped = min_p_mask(warped, [r.params.min_p for r in rows])
    return logits, warped


def sample(logits: paddle.Tensor, rows: List[SamplingRow]) -> List[int]:
    """One token per row of logits (B, V): argmax for greedy rows, else a draw from the row's
    own generator (inverse CDF, so a seeded request reproduces in any batch)."""
    if logits.shape[0] != len(rows):
        raise ValueError(f"{logits.shape[0]} logits rows for {len(rows)} sampling rows")
    processed, warped = process_logits(logits.astype("float32"), rows)
    greedy = processed.argmax(axis=-1).numpy()
    if all(r.params.greedy for r in rows):
        return [int(t) for t in greedy]
    probs = F.softmax(warped, axis=-1).numpy().astype(np.float64)
    return [int(greedy[i]) if r.params.greedy else _draw(probs[i], r.generator)
            for i, r in enumerate(rows)]


def _draw(probs: np.ndarray, generator: np.random.Generator) -> int:
    cdf = np.cumsum(probs)
    index = np.searchsorted(cdf, generator.random() * cdf[-1], side="right")
    return int(min(index, len(probs) - 1))
