"""The server's request fields -> SamplingParams: vLLM's `ignore_eos` extra field, which
`bench-serve --ignore-eos` sends for answers of exactly max_tokens tokens."""
from paddle_qwenvl.sampling import SamplingParams
from paddle_qwenvl.serving.protocol import sampling_params


def test_ignore_eos_field():
    default = SamplingParams(temperature=0.0)
    [asked] = sampling_params({"ignore_eos": True, "max_tokens": 3}, default)
    assert (asked.ignore_eos, asked.max_new_tokens) == (True, 3)
    [plain] = sampling_params({"max_tokens": 3}, default)
    assert plain.ignore_eos is False
