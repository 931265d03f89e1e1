"""Vision-tower outputs by media content, bounded in bytes, least recently used evicted first.

A known image or video costs no vision time, whether or not its KV blocks are still cached and
wherever it sits in the prompt. Plain Python: values are opaque, their sizes given by the caller.
"""
from collections import OrderedDict
from typing import Any, Optional

ENCODER_CACHE_MEMORY = 256 << 20      # the default capacity (engine, Predictor, CLI)


class EncoderCache:
    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError(f"encoder cache capacity must be >= 0 bytes, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._entries = OrderedDict()             # key -> (value, nbytes), oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Optional[Any]:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, value: Any, nbytes: int) -> None:
        """Keeps value unless it alone exceeds the capacity; evicts the least recently used to fit."""
        if key in self._entries or nbytes > self.capacity_bytes:
            return
        while self.used_bytes + nbytes > self.capacity_bytes:
            _, (_, size) = self._entries.popitem(last=False)
            self.used_bytes -= size
        self._entries[key] = (value, nbytes)
        self.used_bytes += nbytes
