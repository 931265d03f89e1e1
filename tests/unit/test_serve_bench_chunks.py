"""What bench-serve counts as a generated token in a stream, and the logprobs switch."""
from paddle_qwenvl.tools.serve_bench import Load, _carries_token, request_body


def test_a_token_is_new_text_or_a_tokens_logprobs():
    assert _carries_token({"delta": {"content": "a"}})
    assert _carries_token({"delta": {"content": ""}, "logprobs": {"content": [{"token": "", "logprob": -1.0}]}})
    assert not _carries_token({"delta": {"role": "assistant", "content": ""}})
    assert not _carries_token({"delta": {}, "finish_reason": "length", "logprobs": None})


def test_logprobs_are_asked_only_when_wanted():
    assert "logprobs" not in request_body(Load(image_size=None), 0, "m")
    assert request_body(Load(image_size=None, logprobs=True), 0, "m")["logprobs"] is True
