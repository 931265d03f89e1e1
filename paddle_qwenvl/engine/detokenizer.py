"""Stop strings over incrementally decoded text (the decoder is processing.IncrementalDecoder)."""
from typing import List, Optional


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
