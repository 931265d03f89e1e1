"""What the engine keeps per request beside its Sequence: sampling, text, media and timings."""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle

from ..sampling import SamplingParams
from .outputs import Timings
from .sampler import SamplingRow, make_generator
from .sequence import Sequence


def stop_token_ids(params: SamplingParams, eos_token_ids: List[int]) -> Tuple[int, ...]:
    """The ids that end a request: its stop_token_ids, and the model's EOS ids unless ignore_eos."""
    return tuple(sorted(set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))))


@dataclass
class MediaItem:
    """One image or video of a prompt."""
    kind: str                                      # "image" or "video"
    pixels: Optional[np.ndarray]                   # (t*h*w, patch_dim) float32; None once encoded
    grid: Tuple[int, int, int]                     # (t, h, w) patches
    rows: np.ndarray                               # prompt indices of its placeholder tokens
    key: bytes                                     # content hash (kind, grid, pixels): the encoder cache's key
    source: int = 0                                # which image / video of the prompt it is (a part of)
    embeds: Optional[paddle.Tensor] = None         # (len(rows), hidden), kept for a recompute
    vision_run: Any = None                         # models.vision.VisionRun while its tower is part-way

    @property
    def span(self) -> Tuple[int, int]:
        """(first, end) prompt indices of its placeholder run."""
        return int(self.rows[0]), int(self.rows[-1]) + 1


@dataclass
class PromptState:
    """The model runner's per-request state: prompt positions and media on arrival, each media's
    vision embeddings once a step needs them."""
    positions: np.ndarray                          # (3, num_prompt_tokens) int64 M-RoPE positions
    mrope_delta: int                               # decode position of token p is p + mrope_delta
    media: List[MediaItem] = field(default_factory=list)


class Request:
    """One request in the engine: the Sequence the scheduler moves, and everything else."""

    def __init__(self, seq: Sequence, params: SamplingParams, stop_ids: Tuple[int, ...],
                 prompt: PromptState, decoder=None):
        self.seq, self.params, self.stop_ids, self.prompt = seq, params, stop_ids, prompt
        self.generator = make_generator(params)  # this request's own random stream
        self.decoder = decoder                   # incremental detokenizer, None without a tokenizer
        self.text = ""                           # output text so far (cut before a stop string)
        self.num_streamed_chars = 0
        self.timings = Timings()
        self.logprobs: list = []                 # sampler.TokenLogprob per generated token, if asked
        self.constraint = params.constraint() if params.constraint is not None else None

    @property
    def request_id(self) -> str:
        return self.seq.request_id

    def sampling_row(self) -> SamplingRow:
        return SamplingRow(self.params, self.seq.prompt_token_ids, self.seq.completion_token_ids,
                           self.generator, self.stop_ids, self.constraint)

    def sampled(self, token_id: int, logprob) -> None:
        """A token the sampler chose for this request: its logprob kept (if asked), its constraint
        advanced."""
        if logprob is not None:
            self.logprobs.append(logprob)
        if self.constraint is not None:
            self.constraint.advance(token_id)
