"""<tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks in a model's output -> OpenAI
tool_calls, whole or as stream deltas.

Streamed as OpenAI streams calls: a delta with the call's index, id, type and function name (and
empty arguments) once the name is out, then deltas that extend its arguments text. Text outside
the blocks is content. A block that does not hold a JSON object with a string "name" and an object
"arguments" stays content (unless its name had already been streamed: then the call is cut there).
"""
import json
import re
import uuid
from typing import List, Optional, Tuple

OPEN, CLOSE = "<tool_call>", "</tool_call>"
HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')    # up to the arguments
BLOCK = re.compile(re.escape(OPEN) + "(.*?)" + re.escape(CLOSE), re.S)
_DECODER = json.JSONDecoder()


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _held(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker` (it may yet become the marker)."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def _parsed(body: str) -> Optional[Tuple[str, str]]:
    """(name, arguments JSON text as the model wrote it) of a whole call block's body; None if malformed."""
    try:
        call = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)):
        return None
    head = HEAD.match(body)
    if head is None:                                   # "arguments" first: write them out
        return call["name"], json.dumps(call["arguments"], ensure_ascii=False)
    arguments = body[head.end():]
    return call["name"], arguments[:_DECODER.raw_decode(arguments)[1]]


class ToolCallStream:
    """Feed the output text as it grows (push); take OpenAI delta dicts back; finish() at the end."""

    def __init__(self):
        self.text = ""
        self.pos = 0               # text before this is handled
        self.in_call = False
        self.calls = 0             # calls begun (streamed names)
        self.name_sent = False     # of the current call
        self.args_sent = 0         # characters of the current call's arguments streamed

    def push(self, delta: str) -> List[dict]:
        self.text += delta
        out = []
        while True:
            step = self._call_step() if self.in_call else self._content_step()
            if step is None:
                return out
            out.extend(step)

    def finish(self) -> List[dict]:
        """Whatever is held back: trailing content, or an unfinished call's text as content."""
        rest = self.text[self.pos:]
        self.pos = len(self.text)
        if self.in_call and not self.name_sent:
            rest = OPEN + rest
        elif self.in_call or (self.calls and not rest.strip()):
            return []
        return [{"content": rest}] if rest else []

    def _content_step(self) -> Optional[List[dict]]:
        start = self.text.find(OPEN, self.pos)
        if start < 0:
            end = len(self.text) - _held(self.text, OPEN)
            if self.calls and not self.text[self.pos:end].strip():
                return None                            # between calls: hold whitespace back
            piece, self.pos = self.text[self.pos:end], max(self.pos, end)
            return [{"content": piece}] if piece else None
        piece = self.text[self.pos:start]
        self.pos, self.in_call, self.name_sent, self.args_sent = start + len(OPEN), True, False, 0
        return [{"content": piece}] if piece.strip() else []

    def _call_step(self) -> Optional[List[dict]]:
        body = self.text[self.pos:]
        end = body.find(CLOSE)
        if end >= 0:
            return self._close(body[:end], self.pos + end + len(CLOSE))
        head = HEAD.match(body)
        if head is None:
            return None
        out = [] if self.name_sent else [self._named(json.loads(f'"{head.group(1)}"'))]
        arguments = body[head.end():]
        try:                                           # complete: stream up to its end only
            arguments = arguments[:_DECODER.raw_decode(arguments)[1]]
        except ValueError:
            pass
        if len(arguments) > self.args_sent:
            out.append(self._arguments(arguments[self.args_sent:]))
            self.args_sent = len(arguments)
        return out or None

    def _close(self, body: str, after: int) -> List[dict]:
        self.pos, self.in_call = after, False
        call = _parsed(body)
        if call is None:
            return [] if self.name_sent else [{"content": OPEN + body + CLOSE}]
        out = [] if self.name_sent else [self._named(call[0])]
        if len(call[1]) > self.args_sent:
            out.append(self._arguments(call[1][self.args_sent:]))
        return out

    def _named(self, name: str) -> dict:
        self.name_sent, self.calls = True, self.calls + 1
        return {"tool_calls": [{"index": self.calls - 1, "id": _call_id(), "type": "function",
                                "function": {"name": name, "arguments": ""}}]}

    def _arguments(self, piece: str) -> dict:
        return {"tool_calls": [{"index": self.calls - 1, "function": {"arguments": piece}}]}


def parse_tool_calls(text: str) -> Tuple[Optional[str], List[dict]]:
    """(content, tool_calls) of a whole output; content None when only calls were made. An
    unfinished or malformed block stays content."""
    content, calls, last = [], [], 0
    for block in BLOCK.finditer(text):
        call = _parsed(block.group(1))
        if call is not None:
            content.append(text[last:block.start()])
            last = block.end()
            calls.append({"id": _call_id(), "type": "function", "function": {"name": call[0], "arguments": call[1]}})
    content = "".join(content) + text[last:]
    return (content.strip() or None if calls else content), calls
