"""Tools in the prompt (Qwen2.5's Hermes format through the Qwen VL chat template) and <tool_call>
blocks in the output parsed into OpenAI tool_calls, whole and streamed."""
import json

import pytest

from paddle_qwenvl.processing.chat_template import QWEN2_5_VL_CHAT_TEMPLATE
from paddle_qwenvl.processing.messages import render_chat
from paddle_qwenvl.serving.protocol import RequestError
from paddle_qwenvl.serving.tool_parser import ToolCallStream, parse_tool_calls
from paddle_qwenvl.serving.tools import fold_tools, tool_choice

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TWO_CALLS = ('Checking both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "when": {"days": [1, 2]}}}\n'
             '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')


def render(body):
    return render_chat(QWEN2_5_VL_CHAT_TEMPLATE, fold_tools(body["messages"], tool_choice(body)))


def test_a_tool_round_trip_renders_as_qwen25_does():
    body = {"tools": [WEATHER], "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"}]}
    assert render(body) == (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query."
        "\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(WEATHER) + "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris and Rome?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nrain\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")


def test_tools_without_a_system_message_get_the_default_one_and_none_lists_no_tools():
    ask = [{"role": "user", "content": "hi"}]
    assert render({"tools": [WEATHER], "messages": ask}).startswith(
        "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n")
    assert render({"tools": [WEATHER], "tool_choice": "none", "messages": ask}) == render({"messages": ask})


@pytest.mark.parametrize("body,fragment", [
    ({"tools": {"name": "f"}}, "tools must be a list"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0] must be"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "must be a JSON schema object"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "not among the tools"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice must be"),
    ({"tool_choice": "required"}, "'required' needs tools"),
])
def test_bad_tools_are_refused(body, fragment):
    with pytest.raises(RequestError) as info:
        tool_choice(body)
    assert fragment in str(info.value) and info.value.status == 400


def test_several_calls_parse_with_their_arguments_text():
    content, calls = parse_tool_calls(TWO_CALLS)
    assert content == "Checking both."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert calls[0]["function"]["arguments"] == '{"city": "Paris", "when": {"days": [1, 2]}}'
    assert calls[1]["function"]["arguments"] == "{}"
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert calls[0]["id"] != calls[1]["id"]


def test_malformed_or_unfinished_calls_stay_content():
    text = '<tool_call>\n{"name": oops}\n</tool_call>\n<tool_call>\n{"arguments": {"x": 1}, "name": "f"}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == '<tool_call>\n{"name": oops}\n</tool_call>'
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [("f", '{"x": 1}')]
    cut = 'Sure <tool_call>\n{"name": "f", "arguments": {"x": '
    assert parse_tool_calls(cut) == (cut, [])
    assert parse_tool_calls("no calls here") == ("no calls here", [])


def streamed(text, step):
    stream, deltas = ToolCallStream(), []
    for i in range(0, len(text), step):
        deltas += stream.push(text[i:i + step])
    return deltas + stream.finish()


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_streamed_deltas_add_up_to_the_parsed_calls(step):
    deltas = streamed(TWO_CALLS, step)
    content = "".join(d.get("content", "") for d in deltas)
    pieces = [p for d in deltas for p in d.get("tool_calls", [])]
    heads = [p for p in pieces if "id" in p]
    assert content.strip() == "Checking both."
    assert [(h["index"], h["type"], h["function"]) for h in heads] == [
        (0, "function", {"name": "get_weather", "arguments": ""}), (1, "function", {"name": "get_time", "arguments": ""})]
    arguments = ["".join(p["function"]["arguments"] for p in pieces if p["index"] == i) for i in (0, 1)]
    assert [c["function"]["arguments"] for c in parse_tool_calls(TWO_CALLS)[1]] == arguments
    assert pieces.index(heads[0]) < pieces.index(heads[1])          # a call's name comes before its arguments
    assert all("<tool" not in d.get("content", "") for d in deltas)


def test_a_streamed_name_comes_before_the_call_ends_and_a_bad_block_comes_back_as_content():
    stream = ToolCallStream()
    early = stream.push('<tool_call>\n{"name": "get_weather", "arguments": {"ci')
    assert early[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert early[1]["tool_calls"][0]["function"]["arguments"] == '{"ci'
    bad = streamed("<tool_call>\nnot json\n</tool_call> then text", 3)
    assert "".join(d.get("content", "") for d in bad) == "<tool_call>\nnot json\n</tool_call> then text"


def test_a_tool_message_with_an_image_is_refused():
    body = {"messages": [{"role": "tool", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    with pytest.raises(RequestError, match="take text only"):
        render(body)
