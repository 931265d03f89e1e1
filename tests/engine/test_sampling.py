import math

import numpy as np
import paddle
import pytest

from paddle_qwenvl.sampling import SamplingParams
from paddle_qwenvl.engine.sampler import (SamplingRow, apply_penalties, make_generator,
                                          mask_min_new_tokens, min_p_mask, sample, top_k_mask, top_p_mask)

INF = float("-inf")


def row(prompt=(), output=(), stop_ids=(), **kw):
    params = SamplingParams(**kw)
    return SamplingRow(params, list(prompt), list(output), make_generator(params), list(stop_ids))


def t(x):
    return paddle.to_tensor(np.array(x, dtype=np.float32))


def test_top_k_keeps_k_largest_per_row():
    out = top_k_mask(t([[1, 4, 2, 3], [5, 1, 2, 0]]), [2, 0]).numpy()
    assert out.tolist() == [[INF, 4, INF, 3], [5, 1, 2, 0]]


def test_top_p_hand_computed():
    # softmax([1,2,3,4]) = .032 .087 .237 .644; ascending cumsum .032 .119 .356 1.0
    logits = t([[1, 2, 3, 4], [1, 2, 3, 4]])
    out = top_p_mask(logits, [0.5, 0.9]).numpy()
    assert out[0].tolist() == [INF, INF, INF, 4]          # .356 <= .5 removed
    assert out[1].tolist() == [INF, 2, 3, 4]              # only .032 <= .1 removed


def test_min_p_hand_computed():
    # top prob .644; min_p .3 -> floor .193 removes .032 and .087
    out = min_p_mask(t([[1, 2, 3, 4]]), [0.3]).numpy()
    assert out.tolist() == [[INF, INF, 3, 4]]


def test_repetition_penalty_divides_positive_multiplies_negative():
    logits = t([[2.0, -1.0, 3.0, 0.5]])
    out = apply_penalties(logits, [row(prompt=[0], output=[1], repetition_penalty=2.0)]).numpy()
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]


def test_presence_and_frequency_over_output_only():
    logits = t([[1.0, 1.0, 1.0]])
    r = row(prompt=[2], output=[0, 0, 1], presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, [r]).numpy()
    np.testing.assert_allclose(out, [[1 - 0.5 - 0.5, 1 - 0.5 - 0.25, 1.0]], rtol=0, atol=1e-6)


def test_min_new_tokens_masks_stop_ids_until_reached():
    logits = t([[5.0, 1.0, 1.0], [5.0, 1.0, 1.0]])
    rows = [row(output=[1], stop_ids=[0], min_new_tokens=2),
            row(output=[1, 1], stop_ids=[0], min_new_tokens=2)]
    out = mask_min_new_tokens(logits, rows).numpy()
    assert out[0, 0] == INF and out[1, 0] == 5.0
    assert sample(logits[:1], [row(output=[1], stop_ids=[0], min_new_tokens=2, temperature=0)]) != [0]


def test_greedy_is_argmax_after_penalty():
    logits = t([[3.0, 2.0, 0.0]])
    assert sample(logits, [row(temperature=0)]) == [0]
    assert sample(logits, [row(output=[0], temperature=0, repetition_penalty=2.0)]) == [1]


def test_fixed_seed_reproduces_whatever_the_batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 50)).astype(np.float32)
    draws = []
    for others in ([], [1, 2]):
        gen = lambda: row(seed=1234, top_k=20, top_p=0.9, temperature=0.8)
        rows = [gen()] + [row(seed=i) for i in others]
        toks = []
        for _ in range(10):
            toks.append(sample(paddle.to_tensor(logits[:len(rows)]), rows)[0])
        draws.append(toks)
    assert draws[0] == draws[1]
    assert len(set(draws[0])) > 1                       # really sampling, not argmax


def test_sampling_never_picks_masked_token():
    logits = t([[0.0, 0.0, 10.0, 9.0]])
    r = row(seed=0, top_k=2)
    assert {sample(logits, [r])[0] for _ in range(50)} == {2, 3}


def test_matches_hf_warpers_on_random_logits():
    torch = pytest.importorskip("torch")
    from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    from paddle_qwenvl.engine.sampler import process_logits
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(1, 64)).astype(np.float32) * 3
    ids = [5, 9, 9, 40]
    hf = torch.tensor(logits)
    for proc in (RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7),
                 TopKLogitsWarper(30), TopPLogitsWarper(0.8), MinPLogitsWarper(0.05)):
        hf = proc(torch.tensor([ids]), hf)
    r = row(prompt=ids[:2], output=ids[2:], repetition_penalty=1.3, temperature=0.7, top_k=30,
            top_p=0.8, min_p=0.05)
    _, ours = process_logits(paddle.to_tensor(logits), [r])
    np.testing.assert_allclose(ours.numpy(), hf.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw, message", [
    (dict(top_p=1.5), "top_p must be in (0, 1], got 1.5"),
    (dict(top_p=0.0), "top_p must be in (0, 1]"),
    (dict(temperature=-1), "temperature must be >= 0"),
    (dict(top_k=-1), "top_k must be an integer >= 0"),
    (dict(min_p=2), "min_p must be in [0, 1]"),
    (dict(repetition_penalty=0), "repetition_penalty must be > 0"),
    (dict(presence_penalty=3), "presence_penalty must be in [-2, 2]"),
    (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1"),
    (dict(max_new_tokens=2, min_new_tokens=3), "min_new_tokens must be an integer in [0, max_new_tokens=2]"),
    (dict(seed=1.5), "seed must be an integer or None"),
    (dict(stop=[""]), "stop must be a non-empty string"),
    (dict(stop_token_ids=[-1]), "stop_token_ids must be a list of token ids"),
    (dict(temperature=math.nan), "temperature must be >= 0"),
])
def test_invalid_params_rejected_with_clear_error(kw, message):
    with pytest.raises(ValueError) as err:
        SamplingParams(**kw)
    assert message in str(err.value)


def test_stop_string_becomes_list():
    assert SamplingParams(stop="###").stop == ["###"]


def test_logprobs_setting_is_checked():
    assert SamplingParams(logprobs=0).logprobs == 0 and SamplingParams().logprobs is None
    for bad in (-1, 21, 2.5, True):
        with pytest.raises(ValueError, match=r"logprobs must be None or an integer in \[0, 20\]"):
            SamplingParams(logprobs=bad)


class OnlyTokens:
    """A TokenConstraint allowing a fixed set of tokens; remembers what it was advanced with."""

    def __init__(self, allowed_ids):
        self.allowed_ids, self.advanced = list(allowed_ids), []

    def allowed(self, vocab_size):
        mask = np.zeros(vocab_size, dtype=bool)
        mask[self.allowed_ids] = True
        return mask

    def advance(self, token_id):
        self.advanced.append(token_id)


def test_a_constraint_limits_its_own_row_in_a_mixed_batch():
    logits = t([[9, 1, 2, 3], [9, 1, 2, 3], [9, 1, 2, 3]])
    greedy, sampled, free = row(temperature=0), row(temperature=1.0, seed=0), row(temperature=0)
    greedy.constraint, sampled.constraint = OnlyTokens([2]), OnlyTokens([1, 3])
    tokens = [sample(logits, [greedy, sampled, free]) for _ in range(20)]
    assert {ts[0] for ts in tokens} == {2}                 # greedy within the allowed set
    assert {ts[1] for ts in tokens} <= {1, 3}              # draws only allowed tokens
    assert {ts[2] for ts in tokens} == {0}                 # the unconstrained row is untouched


def test_each_request_gets_its_own_constraint_advanced_by_its_tokens():
    from paddle_qwenvl.engine.request import Request
    from paddle_qwenvl.engine.sequence import Sequence
    made = []
    params = SamplingParams(constraint=lambda: made.append(OnlyTokens([1])) or made[-1])
    first, second = (Request(Sequence([5, 6]), params, (), None) for _ in range(2))
    first.sampled(1, None)
    assert made[0] is not made[1] and made[0].advanced == [1] and made[1].advanced == []
    assert first.sampling_row().constraint is made[0]


def test_constraint_must_be_a_factory():
    with pytest.raises(ValueError, match="constraint must be None or a callable"):
        SamplingParams(constraint=OnlyTokens([1]))
