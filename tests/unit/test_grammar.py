"""llguidance constraints over the tiny tokenizer: whatever allowed token is drawn, the text ends
as the grammar says (checked with random draws, as a random model would make them)."""
import json

import numpy as np
import pytest

pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

from paddle_qwenvl.processing.tokenizer import Tokenizer            # noqa: E402
from paddle_qwenvl.serving.grammar import Grammars                 # noqa: E402
from paddle_qwenvl.serving.protocol import RequestError            # noqa: E402
from paddle_qwenvl.serving.tool_parser import parse_tool_calls     # noqa: E402
from paddle_qwenvl.serving.tools import tool_call_grammar, tool_choice   # noqa: E402
from paddle_qwenvl.tools.tiny_tokenizer import write_processor_files     # noqa: E402

SCHEMA = {"type": "object", "properties": {
    "colour": {"enum": ["red", "green"]}, "count": {"type": "integer", "minimum": 0, "maximum": 99},
    "ok": {"type": "boolean"}}, "required": ["colour", "count", "ok"], "additionalProperties": False}
PAD = 7                     # the model's vocabulary may be wider than the tokenizer's


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    write_processor_files(str(root), family="qwen2_5_vl")
    return Tokenizer.from_pretrained(str(root))


@pytest.fixture(scope="module")
def grammars(tokenizer):
    return Grammars(tokenizer, [tokenizer.eos_token_id])


def draw(constraint, tokenizer, seed, limit=200):
    """Random allowed tokens until EOS: the decoded text."""
    rng, ids = np.random.default_rng(seed), []
    vocab = tokenizer.vocab_size + PAD
    for _ in range(limit):
        allowed = constraint.allowed(vocab)
        assert not allowed[tokenizer.vocab_size:].any()
        token = int(rng.choice(np.flatnonzero(allowed)))
        if token == tokenizer.eos_token_id:
            return tokenizer.decode(ids, skip_special_tokens=False)
        constraint.advance(token)
        ids.append(token)
    raise AssertionError(f"no EOS within {limit} tokens: {tokenizer.decode(ids)!r}")


@pytest.mark.parametrize("seed", range(4))
def test_json_schema_output_validates(grammars, tokenizer, seed):
    text = draw(grammars.json_schema(SCHEMA, "response_format")(), tokenizer, seed)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_each_request_gets_a_fresh_state(grammars, tokenizer):
    factory = grammars.json_schema(SCHEMA, "response_format")
    first, second = factory(), factory()
    draw(first, tokenizer, 0)
    assert np.flatnonzero(first.allowed(tokenizer.vocab_size)).tolist() == [tokenizer.eos_token_id]   # done
    fresh = second.allowed(tokenizer.vocab_size)
    assert fresh.any() and not fresh[tokenizer.eos_token_id]         # the other still has it all to write


@pytest.mark.parametrize("seed", range(3))
def test_a_named_tool_choice_forces_one_valid_call(grammars, tokenizer, seed):
    tools = [{"type": "function", "function": {"name": name, "parameters": SCHEMA}} for name in ("paint", "count")]
    choice = tool_choice({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "count"}}})
    text = draw(grammars.lark(tool_call_grammar(choice, tokenizer), "tools")(), tokenizer, seed)
    content, calls = parse_tool_calls(text)
    assert content is None and [c["function"]["name"] for c in calls] == ["count"]
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), SCHEMA)


def test_required_tool_choice_calls_listed_functions(grammars, tokenizer):
    tools = [{"type": "function", "function": {"name": name, "parameters": SCHEMA}} for name in ("paint", "count")]
    grammar = tool_call_grammar(tool_choice({"tools": tools, "tool_choice": "required"}), tokenizer)
    for seed in range(3):
        content, calls = parse_tool_calls(draw(grammars.lark(grammar, "tools")(), tokenizer, seed, limit=600))
        assert content is None and calls and {c["function"]["name"] for c in calls} <= {"paint", "count"}


@pytest.mark.parametrize("schema,fragment", [
    ({"type": "nonsense"}, "Invalid type"),
    ({"properties": 3}, "properties must be an object"),
])
def test_a_bad_schema_is_a_request_error(grammars, schema, fragment):
    with pytest.raises(RequestError) as info:
        grammars.json_schema(schema, "response_format.json_schema.schema")
    assert fragment in str(info.value) and info.value.param == "response_format.json_schema.schema"
