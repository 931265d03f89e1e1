"""OpenAI tools in Qwen2.5's Hermes-style prompt format, and the grammar that forces a call.

Qwen2.5's chat template lists the tools in the system turn inside <tools></tools>, writes each
assistant call as <tool_call>{"name": ..., "arguments": {...}}</tool_call> and each tool result as
<tool_response>...</tool_response> in a user turn. The Qwen VL templates have no tools section, so
the tools, calls and results are folded here into plain system / assistant / user messages that any
Qwen VL template renders into exactly that text.
"""
import json
from dataclasses import dataclass
from typing import Optional

from .grammar import JSON_OPTIONS
from .protocol import RequestError

DEFAULT_SYSTEM = "You are a helpful assistant."          # the Qwen VL templates' default
TOOLS_HEADER = ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


@dataclass
class ToolChoice:
    """What a request's tools and tool_choice ask for."""
    tools: list                    # the request's tools, checked; [] without tools
    mode: str                      # "none", "auto", "required" or "named"
    name: Optional[str] = None     # the function a named choice forces

    @property
    def listed(self) -> bool:      # the tools go into the prompt
        return bool(self.tools) and self.mode != "none"


def tool_choice(body: dict) -> ToolChoice:
    tools = _checked_tools(body.get("tools"))
    choice = body.get("tool_choice", "auto" if tools else "none")
    if choice in ("none", "auto", "required"):
        if choice == "required" and not tools:
            raise RequestError("tool_choice 'required' needs tools", param="tool_choice")
        return ToolChoice(tools, choice)
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if name is None:
        raise RequestError("tool_choice must be 'none', 'auto', 'required' or "
                           "{'type': 'function', 'function': {'name': NAME}}", param="tool_choice")
    if name not in [t["function"]["name"] for t in tools]:
        raise RequestError(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
    return ToolChoice(tools, "named", name)


def _checked_tools(tools) -> list:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise RequestError("tools must be a list of {'type': 'function', 'function': {...}}", param="tools")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise RequestError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': NAME, "
                               "'parameters': JSON_SCHEMA}}", param=f"tools[{i}]")
        if not isinstance(function.get("parameters", {}), dict):
            raise RequestError(f"tools[{i}].function.parameters must be a JSON schema object",
                               param=f"tools[{i}].function.parameters")
    return tools


def fold_tools(messages: list, choice: ToolChoice) -> list:
    """Messages with tool roles and assistant tool_calls (protocol.to_messages' output, or OpenAI's)
    -> plain system / user / assistant ones."""
    out, skip = [], 0
    if choice.listed:
        system, skip = _system_with_tools(messages, choice.tools)
        out.append(system)
    after_tool = False
    for i, message in enumerate(messages[skip:], skip):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":                  # consecutive results share one user turn
            response = f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>"
            if after_tool:
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + response}
            else:
                out.append({"role": "user", "content": response})
        elif role == "assistant" and message.get("tool_calls"):
            out.append({"role": "assistant", "content": _assistant_calls(message, i)})
        else:
            out.append(message)
        after_tool = role == "tool"
    return out


def _system_with_tools(messages: list, tools: list):
    """The system message that lists the tools, and how many given messages it replaces (0 or 1)."""
    first = messages[0] if messages and isinstance(messages[0], dict) else {}
    given = first.get("role") == "system"
    listed = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    system = _text(first.get("content")) if given else DEFAULT_SYSTEM
    return {"role": "system", "content": system + TOOLS_HEADER + listed + TOOLS_FOOTER}, int(given)


def _text(content) -> str:
    """A message's text: a string, or its text parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p.get("text", "") for p in content)
    raise RequestError("with tools, system and tool messages and assistant messages with tool_calls take text "
                       "only: a string or a list of text parts", param="messages")


def _assistant_calls(message: dict, i: int) -> str:
    parts = [_text(message.get("content"))] if message.get("content") else []
    for j, call in enumerate(message["tool_calls"]):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(f"messages[{i}].tool_calls[{j}] needs function.name and function.arguments",
                               param=f"messages[{i}].tool_calls[{j}]")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                raise RequestError(f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON",
                                   param=f"messages[{i}].tool_calls[{j}].function.arguments") from None
        call_json = json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)
        parts.append(f"<tool_call>\n{call_json}\n</tool_call>")
    return "\n".join(parts)


def tool_call_grammar(choice: ToolChoice, tokenizer) -> str:
    """Lark (llguidance dialect) for output that is tool calls only: one call of the named function,
    or one or more calls of any listed function ("required")."""
    functions = [t["function"] for t in choice.tools if choice.mode != "named" or t["function"]["name"] == choice.name]
    more = "" if choice.mode == "named" else ' ("\\n" tool_call)*'
    open_, close = _marker(tokenizer, "<tool_call>"), _marker(tokenizer, "</tool_call>")
    calls = " | ".join(f"call_{k}" for k in range(len(functions)))
    rules = [f"start: tool_call{more}", f'tool_call: {open_} "\\n" ({calls}) "\\n" {close}']
    for k, function in enumerate(functions):
        rules.append(f"call_{k}: %json {json.dumps(_call_schema(function))}")
    return "\n".join(rules)


def _call_schema(function: dict) -> dict:
    return {"type": "object", "properties": {"name": {"const": function["name"]},
                                             "arguments": function.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"], "additionalProperties": False, "x-guidance": JSON_OPTIONS}


def _marker(tokenizer, text: str) -> str:
    """The tokenizer's own token for <tool_call> / </tool_call> (Qwen2.5 has them), else the text."""
    try:
        return f"<[{tokenizer.token_to_id(text)}]>"
    except KeyError:
        return json.dumps(text)

