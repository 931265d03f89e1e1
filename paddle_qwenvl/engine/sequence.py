"""What the scheduler and the block manager see of a request: its tokens, cache blocks and status.

Plain Python (no tensors), so the scheduler and block manager can be tested alone. Everything else
about a request (sampling, text, media, timings) is the engine's (engine/request.py).
"""
import enum
import itertools
from typing import List, Optional


class SequenceStatus(enum.Enum):
    WAITING = "waiting"      # queued for (re)prefill; holds no cache blocks
    RUNNING = "running"      # has cache blocks; prefilled, decoding
    FINISHED = "finished"


class Sequence:
    """Token ids (prompt + output so far), the block table of its KV cache and its status.

    `num_computed_tokens` counts tokens whose keys/values are in the cache. After a preemption by
    recompute it drops to 0 and the whole prompt + output is prefilled again.
    """
    _ids = itertools.count()

    def __init__(self, token_ids: List[int], request_id: Optional[str] = None):
        if not token_ids:
            raise ValueError("a request needs at least one prompt token; got an empty prompt")
        self.seq_id = next(Sequence._ids)
        self.request_id = request_id if request_id is not None else str(self.seq_id)
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.status = SequenceStatus.WAITING
        self.block_table: List[int] = []
        self.num_computed_tokens = 0
        self.num_scheduled_tokens = 0   # set by the scheduler for the current step
        self.num_preemptions = 0
        self.finish_reason: Optional[str] = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def prompt_token_ids(self) -> List[int]:
        return self.token_ids[:self.num_prompt_tokens]

    @property
    def completion_token_ids(self) -> List[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    def append_token(self, token_id: int) -> None:
        self.token_ids.append(int(token_id))
