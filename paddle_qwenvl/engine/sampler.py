"""The engine's sampler: logits processing for a batch whose rows have their own SamplingParams,
then one token per row (argmax, or a draw from the request's own random stream)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence as Seq, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from ..sampling import SamplingParams, TokenConstraint

NEG_INF = float("-inf")


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
    constraint: Optional[TokenConstraint] = None     # the request's own allowed-token limit


def _column(rows, fn, dtype="float32") -> paddle.Tensor:
    return paddle.to_tensor(np.array([fn(r) for r in rows], dtype=dtype)).unsqueeze(1)   # (B, 1)


def _token_mask(id_lists, vocab: int) -> np.ndarray:
    """(B, V) bool, True at the ids of each row's list."""
    mask = np.zeros((len(id_lists), vocab), dtype=bool)
    for i, ids in enumerate(id_lists):
        mask[i, np.asarray(ids, dtype=np.int64)] = True
    return mask


def mask_constrained(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    """-inf at the tokens each constrained row's TokenConstraint does not allow now."""
    masks = [r.constraint.allowed(logits.shape[1]) if r.constraint is not None else None for r in rows]
    if all(m is None for m in masks):
        return logits
    allowed = np.stack([np.ones(logits.shape[1], dtype=bool) if m is None else m for m in masks])
    return paddle.where(paddle.to_tensor(allowed), logits, paddle.full_like(logits, NEG_INF))


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


def penalize(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    """The logits greedy rows take their argmax of: constraints, penalties, min_new_tokens."""
    return mask_min_new_tokens(apply_penalties(mask_constrained(logits, rows), rows), rows)


def warp(logits: paddle.Tensor, rows: List[SamplingRow]) -> paddle.Tensor:
    """Penalized logits -> those sampled rows draw from: temperature, top-k, top-p, min-p."""
    warped = apply_temperature(logits, rows)
    if any(r.params.top_k > 0 for r in rows):
        warped = top_k_mask(warped, [r.params.top_k for r in rows])
    if any(r.params.top_p < 1 for r in rows):
        warped = top_p_mask(warped, [r.params.top_p for r in rows])
    if any(r.params.min_p > 0 for r in rows):
        warped = min_p_mask(warped, [r.params.min_p for r in rows])
    return warped


def process_logits(logits: paddle.Tensor, rows: List[SamplingRow]):
    """-> (processed logits for greedy rows, warped logits for sampled rows), both (B, V)."""
    logits = penalize(logits, rows)
    return logits, warp(logits, rows)


def sample(logits: paddle.Tensor, rows: List[SamplingRow]) -> List[int]:
    """One token per row of logits (B, V): argmax for greedy rows, else a draw from the row's
    own generator (inverse CDF, so a seeded request reproduces in any batch). A batch of greedy
    rows skips the warpers (a pass over the vocabulary each)."""
    if logits.shape[0] != len(rows):
        raise ValueError(f"{logits.shape[0]} logits rows for {len(rows)} sampling rows")
    processed = penalize(logits if logits.dtype == paddle.float32 else logits.astype("float32"), rows)
    greedy = processed.argmax(axis=-1).numpy()
    if all(r.params.greedy for r in rows):
        return [int(t) for t in greedy]
    probs = F.softmax(warp(processed, rows), axis=-1).numpy().astype(np.float64)
    return [int(greedy[i]) if r.params.greedy else _draw(probs[i], r.generator)
            for i, r in enumerate(rows)]


@dataclass
class TokenLogprob:
    """A generated token's log-probability under the model (log-softmax of its raw logits, before
    penalties and sampling warpers, as vLLM reports them) and the most likely alternatives."""
    token_id: int
    logprob: float
    top: List[Tuple[int, float]]                # (token id, logprob), most likely first


def token_logprobs(logits: paddle.Tensor, tokens: List[int], rows: List[SamplingRow]) -> List[Optional[TokenLogprob]]:
    """For each row that asked (params.logprobs not None): the chosen token's TokenLogprob."""
    wanted = [i for i, r in enumerate(rows) if r.params.logprobs is not None]
    out: List[Optional[TokenLogprob]] = [None] * len(rows)
    if not wanted:
        return out
    logp = _log_softmax(paddle.gather(logits, paddle.to_tensor(wanted)).astype("float32").numpy())
    for row, i in zip(logp, wanted):
        k = rows[i].params.logprobs
        top = np.argsort(-row, kind="stable")[:k] if k else []
        out[i] = TokenLogprob(tokens[i], float(row[tokens[i]]), [(int(t), float(row[t])) for t in top])
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise, in numpy: Paddle 3.3.1's CPU log_softmax takes ~19 s over one 151,936-entry row."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _draw(probs: np.ndarray, generator: np.random.Generator) -> int:
    cdf = np.cumsum(probs)
    index = np.searchsorted(cdf, generator.random() * cdf[-1], side="right")
    return int(min(index, len(probs) - 1))
