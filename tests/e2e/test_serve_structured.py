"""Tool calling and structured output of `paddle-qwenvl serve`, driven with the official openai client.
The tiny checkpoint is random: only the grammar makes its output valid JSON or a valid call."""
import json
import threading

import pytest

from .test_serve import KEY, NAME, QUESTION, client, expected, predictor, server   # noqa: F401 (fixtures)

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("llguidance")

SCHEMA = {"type": "object", "properties": {
    "colour": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer", "minimum": 0, "maximum": 999},
    "tags": {"type": "array", "items": {"enum": ["sky", "river", "house"]}, "maxItems": 3}},
    "required": ["colour", "count", "tags"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer", "minimum": 1,
                                                                                    "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False}}}
SHOUT = {"type": "function", "function": {"name": "shout", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What will the weather be in Paris?"}]


def json_schema_format(schema=SCHEMA):
    return {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}


def test_json_schema_output_validates_for_every_choice(client):
    got = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], n=2,
                                         temperature=1.0, seed=5, max_tokens=200, response_format=json_schema_format())
    assert len(got.choices) == 2
    for choice in got.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)


def test_streamed_json_schema_output_validates(client):
    stream = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}], stream=True,
                                            temperature=1.0, seed=7, max_tokens=200, response_format=json_schema_format())
    chunks = [c for c in stream if c.choices]
    jsonschema.validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks)), SCHEMA)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_json_object_output_parses(client):
    got = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}], temperature=0,
                                         max_tokens=300, response_format={"type": "json_object"})
    assert got.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(got.choices[0].message.content), dict)


def test_constrained_and_free_requests_share_a_batch(client, predictor):
    """A greedy free request answers as it does alone while constrained ones decode beside it."""
    results = {}

    def constrained(i):
        results[i] = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": QUESTION}], temperature=1.0, seed=i, max_tokens=200,
            response_format=json_schema_format()).choices[0].message.content
    threads = [threading.Thread(target=constrained, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    free = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": QUESTION}],
                                          temperature=0, max_tokens=8)
    for t in threads:
        t.join(timeout=300)
    assert free.choices[0].message.content == expected(predictor, with_image=False).text
    for text in results.values():
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(results) == 2


def named(name="get_weather"):
    return {"type": "function", "function": {"name": name}}


def test_a_named_tool_choice_returns_a_valid_call(client):
    got = client.chat.completions.create(model=NAME, messages=ASK, tools=[SHOUT, WEATHER], tool_choice=named(),
                                         temperature=1.0, seed=3, max_tokens=100)
    choice = got.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_a_streamed_named_tool_call_comes_as_name_then_arguments(client):
    stream = client.chat.completions.create(model=NAME, messages=ASK, tools=[SHOUT, WEATHER], tool_choice=named(),
                                            temperature=1.0, seed=4, max_tokens=100, stream=True)
    deltas = [c.choices[0] for c in stream if c.choices]
    pieces = [p for d in deltas for p in (d.delta.tool_calls or [])]
    assert pieces[0].id.startswith("call_") and pieces[0].type == "function"
    assert pieces[0].function.name == "get_weather" and pieces[0].function.arguments == ""
    assert all(p.index == 0 and p.id is None and p.function.name is None for p in pieces[1:])
    arguments = "".join(p.function.arguments for p in pieces)
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    assert not "".join(d.delta.content or "" for d in deltas)
    assert deltas[-1].finish_reason == "tool_calls"


def test_a_tool_result_goes_back_in_as_qwen_writes_it(client, predictor):
    """The call and its result as OpenAI messages answer as the same turns written by hand in
    Qwen's format (<tool_call> in the assistant turn, <tool_response> in a user turn)."""
    from paddle_qwenvl import SamplingParams
    call = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    got = client.chat.completions.create(model=NAME, messages=history, tools=[WEATHER], tool_choice="none",
                                         temperature=0, max_tokens=8)
    by_hand = ASK + [{"role": "assistant", "content": f"<tool_call>\n{json.dumps(call)}\n</tool_call>"},
                     {"role": "user", "content": "<tool_response>\nsunny, 21 C\n</tool_response>"}]
    want = predictor.generate(by_hand, SamplingParams(temperature=0, max_new_tokens=8))
    assert got.choices[0].message.content == want.text
    assert got.usage.prompt_tokens == want.usage.prompt_tokens


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(response_format={"type": "xml"}), "response_format.type must be"),
    (dict(response_format={"type": "json_schema"}), "response_format json_schema needs"),
    (dict(response_format=json_schema_format({"type": "nonsense"})), "the schema cannot be enforced"),
    (dict(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0] must be"),
    (dict(tools=[WEATHER], tool_choice=named("missing")), "not among the tools"),
    (dict(tools=[WEATHER], tool_choice=named(), response_format={"type": "json_object"}), "cannot be combined"),
    (dict(messages=ASK + [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": "{not json"}}]}]), "arguments is not valid JSON"),
])
def test_bad_tools_and_formats_get_openai_errors(client, kwargs, fragment):
    args = dict(dict(model=NAME, messages=ASK, max_tokens=4), **kwargs)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**args)
    assert info.value.status_code == 400
    assert fragment in info.value.body["message"] and info.value.body["type"] == "invalid_request_error"
