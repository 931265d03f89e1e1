"""What a request's response_format, tools and tool_choice ask of its prompt and its decoding."""
from dataclasses import dataclass
from typing import Optional

from .grammar import GrammarFactory, Grammars
from .protocol import RequestError
from .tools import ToolChoice, tool_call_grammar, tool_choice


@dataclass
class Guidance:
    tools: ToolChoice                       # what goes into the prompt (tools.fold_tools)
    constraint: Optional[GrammarFactory]    # SamplingParams.constraint; None: free output

    @property
    def parse_tools(self) -> bool:          # <tool_call> blocks in the output become tool_calls
        return self.tools.listed


def guidance(body: dict, grammars: Grammars, tokenizer) -> Guidance:
    choice = tool_choice(body)
    constraint = response_format(body.get("response_format"), grammars)
    if choice.mode in ("required", "named"):
        if constraint is not None:
            raise RequestError("response_format json_object / json_schema cannot be combined with tool_choice "
                               "'required' or a named function: drop one of them", param="response_format")
        constraint = grammars.lark(tool_call_grammar(choice, tokenizer), "tools")
    return Guidance(choice, constraint)


def response_format(spec, grammars: Grammars) -> Optional[GrammarFactory]:
    """The grammar of OpenAI's response_format: text (none), json_object or json_schema."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if spec is None or kind == "text":
        return None
    if kind == "json_object":
        return grammars.json_schema({"type": "object"}, "response_format")
    if kind == "json_schema":
        schema = spec.get("json_schema", {}).get("schema") if isinstance(spec.get("json_schema"), dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format json_schema needs {'json_schema': {'name': NAME, 'schema': {...}}}",
                               param="response_format.json_schema")
        return grammars.json_schema(schema, "response_format.json_schema.schema")
    raise RequestError("response_format.type must be 'text', 'json_object' or 'json_schema'",
                       param="response_format")
