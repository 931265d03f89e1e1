"""One request's state as the engine sees it: tokens, cache blocks, status and per-request extras.

Plain Python (no tensors are created here), so the scheduler and block manager can be tested alone.
"""
import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, List, Optional


class SequenceStatus(enum.Enum):
    WAITING = "waiting"      # queued for (re)prefill; holds no cache blocks
    RUNNING = "running"      # has cache blocks; prefilled, decoding
    FINISHED = "finished"


@dataclass
class Timings:
    """Seconds spent on this request. Batched steps are shared, so prefill/decode are wall times
    of the steps the request took part in."""
    vision: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0


class Sequence:
    """Token ids (prompt + output so far), the block table of its KV cache and its bookkeeping.

    `num_computed_tokens` counts tokens whose keys/values are in the cache. After a preemption by
    recompute it drops to 0 and the whole prompt + output is prefilled again.
    """
    _ids = itertools.count()

    def __init__(self, token_ids: List[int], sampling_params: Any = None,
                 request_id: Optional[str] = None, mm_inputs: Any = None):
        if not token_ids:
            raise ValueError("a request needs at least one prompt token; got an empty prompt")
        self.seq_id = next(Sequence._ids)
        self.request_id = request_id if request_id is not None else str(self.seq_id)
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.sampling_params = sampling_params
        self.status = SequenceStatus.WAITING
        self.block_table: List[int] = []
        self.num_computed_tokens = 0
        self.num_scheduled_tokens = 0   # set by the scheduler for the current step
        self.num_preemptions = 0
        self.finish_reason: Optional[str] = None
        self.mm_inputs = mm_inputs        # pixel values, grids: consumed by the model runner
        self.mm_cache: Any = None         # vision embeddings + prompt positions, kept for recompute
        self.mrope_delta = 0              # decode position of index p is p + mrope_delta
        self.timings = Timings()
        self.generator: Any = None        # per-request random generator (sampling)
        self.output_text = ""
        self.decoder: Any = None          # incremental detokenizer of the output
        self.num_streamed_chars = 0

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
