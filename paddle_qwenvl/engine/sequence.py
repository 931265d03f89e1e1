"""What the scheduler and the block manager see of a request: its tokens, cache blocks and status.

Plain Python (no tensors), so the scheduler and block manager can be tested alone. Everything else
about a request (sampling, text, media, timings) is the engine's (engine/request.py).
"""
import enum
import itertools
from typing import List, Optional, Sequence as Sequence_, Tuple


class SequenceStatus(enum.Enum):
    WAITING = "waiting"      # queued for (re)prefill; holds no cache blocks
    RUNNING = "running"      # has cache blocks; prefilled, decoding
    FINISHED = "finished"


class Sequence:
    """Token ids (prompt + output so far), the block table of its KV cache and its status.

    `num_computed_tokens` counts tokens whose keys/values are in the cache. A prefill may start past
    0 (a cached prefix) and take several steps (chunks). After a preemption by recompute it drops to
    0 and the prompt + output is prefilled again.
    """
    _ids = itertools.count()

    def __init__(self, token_ids: List[int], request_id: Optional[str] = None,
                 media_spans: Sequence_[Tuple[int, int, bytes]] = ()):
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
        # prefix caching: (first, end, key) of each media's placeholder tokens, and the names of
        # the full blocks so far (block_manager.extend_block_hashes)
        self.media_spans = list(media_spans)
        self.block_hashes: List[bytes] = []
        self.num_cached_blocks = 0        # leading blocks of block_table already findable by hash
        self.num_cached_tokens: Optional[int] = None   # prompt tokens found cached at first admission
        # (first, end) of the placeholder runs of media still in the vision tower (when the engine
        # spreads it over steps): tokens from the first such run on cannot be computed yet
        self.media_in_progress: List[Tuple[int, int]] = []

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

    @property
    def num_ready_tokens(self) -> int:
        """New tokens whose inputs exist: all of them, or those before the first placeholder run
        (past the computed tokens) of a media still in the vision tower."""
        end = self.num_tokens
        for first, last in self.media_in_progress:
            if last > self.num_computed_tokens:
                end = min(end, first)
        return max(0, end - self.num_computed_tokens)

    @property
    def num_new_tokens(self) -> int:
        """Tokens whose keys/values are not in the cache yet: 1 when decoding, more while prefilling."""
        return self.num_tokens - self.num_computed_tokens
