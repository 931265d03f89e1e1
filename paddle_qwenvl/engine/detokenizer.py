"""Incremental detokenization and stop strings.

Decoding token by token cannot decode each id alone (byte-level BPE splits characters across
tokens), so each step decodes a short window: the text of ids[prefix:] minus that of
ids[prefix:read]. A trailing U+FFFD means an incomplete character: wait for more tokens, but at
most MAX_HELD tokens (a UTF-8 character has at most 4 bytes), so invalid bytes still come out.
"""
from typing import List, Optional, Tuple

REPLACEMENT = "\ufffd"
MAX_HELD = 4


class IncrementalDecoder:
    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: List[int] = []
        self.prefix_offset = 0    # start of the decoding window
        self.read_offset = 0      # ids before this are already in the text

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def step(self, token_id: int) -> str:
        """New text made complete by `token_id` (may be empty)."""
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        window = self._decode(self.ids[self.prefix_offset:])
        incomplete = window.endswith(REPLACEMENT) and len(self.ids) - self.read_offset < MAX_HELD
        if len(window) <= len(before) or (incomplete and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return window[len(before):]


def find_stop(text: str, stops: List[str], new_chars: int) -> Optional[int]:
    """Index where the earliest stop string starts in `text`, looking only where one could end
    within the last `new_chars` characters; None if there is none."""
    found = None
    for stop in stops:
        start = max(0, len(text) - new_chars - len(stop) + 1)
        index = text.find(stop, start)
        if index != -1 and (found is None or index < found):
            found = index
    return found


def stream_safe_end(text: str, stops: List[str], finished: bool) -> int:
    """How much of `text` may be streamed: hold back a tail that could start a stop string."""
    if finished or not stops:
        return len(text)
    return max(0, len(text) - max(len(s) for s in stops) + 1)
