"""The engine loop: requests in, one scheduled model step at a time, outputs (or text deltas) out."""
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from ..processing.tokenizer import IncrementalDecoder
from ..sampling import SamplingParams
from .block_manager import BLOCK_SIZE, BlockManager, blocks_for
from .detokenizer import find_stop, stream_safe_end
from .encoder_cache import ENCODER_CACHE_MEMORY
from .inputs import PromptInputs
from .model_runner import ModelRunner
from .outputs import RequestOutput, Usage
from .request import PromptState, Request, stop_token_ids
from .scheduler import Scheduler
from .sequence import Sequence


@dataclass
class EngineConfig:
    max_model_len: int = 4096            # prompt + output tokens of one request
    block_size: int = BLOCK_SIZE         # tokens per KV cache block (prefix caching reuses whole
                                         # blocks; decode attention costs the same at 16 and 64)
    kv_cache_memory: int = 1 << 30       # bytes for all layers' key and value caches (an upper
                                         # bound: no more than max_num_seqs x max_model_len tokens;
                                         # float32, bf16 for a bfloat16 model)
    max_num_seqs: int = 16               # sequences per step
    max_num_batched_tokens: Optional[int] = None   # tokens per step (default max_model_len); a
                                         # longer prompt is prefilled in chunks beside the decodes
    enable_prefix_caching: bool = True   # reuse the KV blocks of an identical prompt prefix
    encoder_cache_memory: int = ENCODER_CACHE_MEMORY   # bytes of vision embeddings kept by media content

    def __post_init__(self):
        for name in ("max_model_len", "block_size", "kv_cache_memory", "max_num_seqs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_num_batched_tokens is None:
            self.max_num_batched_tokens = max(self.max_model_len, self.max_num_seqs)
        if not isinstance(self.max_num_batched_tokens, int) or self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens={self.max_num_batched_tokens!r} must be an integer >= "
                             f"max_num_seqs={self.max_num_seqs}: every running sequence decodes one token a step")
        if not isinstance(self.encoder_cache_memory, int) or self.encoder_cache_memory < 0:
            raise ValueError(f"encoder_cache_memory must be an integer >= 0 bytes, got {self.encoder_cache_memory!r}")


def media_spans(prompt: PromptState, inputs: PromptInputs) -> List[Tuple[int, int, bytes]]:
    """(first, end, key) of each media's placeholder run, for prefix caching: the key is the media's
    content hash, with a video's seconds per temporal grid (they set its tokens' positions)."""
    seconds = inputs.second_per_grid_ts or []
    spans = []
    for item in prompt.media:
        key = item.key
        if item.kind == "video":
            key += struct.pack("<d", seconds[item.source] if item.source < len(seconds) else 0.0)
        spans.append((int(item.rows[0]), int(item.rows[-1]) + 1, key))
    return spans


class LLMEngine:
    """Continuous batching over one paged KV cache. `tokenizer` (processing.Tokenizer) detokenizes
    the outputs; with None the outputs carry token ids only (text stays empty, stop strings unused)."""

    def __init__(self, model, tokenizer, config: EngineConfig):
        self.config = config
        self.tokenizer = tokenizer
        self.eos_ids = list(model.config.eos_token_ids)
        # no more blocks than max_num_seqs sequences of max_model_len tokens can use
        most = config.max_num_seqs * -(-config.max_model_len // config.block_size)
        chunked = config.max_num_batched_tokens < config.max_model_len
        self.runner = ModelRunner(model, config.block_size, config.kv_cache_memory, most, config.encoder_cache_memory,
                                  vision_step_tokens=config.max_num_batched_tokens if chunked else None)
        capacity = self.runner.num_blocks * config.block_size
        if capacity < config.max_model_len:
            raise ValueError(f"kv_cache_memory={config.kv_cache_memory} bytes holds {capacity} tokens, "
                             f"fewer than max_model_len={config.max_model_len}: raise kv_cache_memory "
                             f"or lower max_model_len")
        blocks = BlockManager(self.runner.num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(blocks, config.max_num_seqs, config.max_num_batched_tokens)
        self._requests = {}               # request id -> unfinished Request
        self._outputs = {}                # request id -> queued outputs (generate/stream)
        self._lock = threading.RLock()    # one step at a time; see follow

    def add_request(self, inputs: PromptInputs, params: SamplingParams,
                    request_id: Optional[str] = None) -> str:
        request = self._new_request(inputs, params, request_id)
        with self._lock:
            if request.request_id in self._requests:
                raise ValueError(f"request id {request.request_id!r} is already running")
            self.scheduler.add(request.seq)
            self._requests[request.request_id] = request
        return request.request_id

    def _new_request(self, inputs: PromptInputs, params: SamplingParams,
                     request_id: Optional[str] = None) -> Request:
        """A checked Request with its prompt state prepared; not yet scheduled."""
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling must be a SamplingParams, got {type(params).__name__}")
        if len(inputs.input_ids) >= self.config.max_model_len:
            raise ValueError(f"the prompt has {len(inputs.input_ids)} tokens; max_model_len="
                             f"{self.config.max_model_len} leaves no room to generate: shorten the "
                             f"prompt (smaller images/videos) or raise max_model_len")
        self._check_token_ids(inputs.input_ids + params.stop_token_ids)
        prompt = self.runner.prepare_prompt(inputs)
        seq = Sequence(inputs.input_ids, request_id, media_spans(prompt, inputs))
        decoder = IncrementalDecoder(self.tokenizer) if self.tokenizer is not None else None
        request = Request(seq, params, stop_token_ids(params, self.eos_ids), prompt, decoder)
        seq.media_in_progress = self.runner.media_in_progress(request)
        return request

    def _check_token_ids(self, ids: List[int]) -> None:
        vocab = self.runner.config.text.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {vocab}): check the "
                             f"prompt ids and stop_token_ids")

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def abort(self, request_id: str) -> bool:
        """Stops a request; False if it is unknown or already finished."""
        with self._lock:
            seq = self.scheduler.abort(request_id)
            request = self._requests.pop(request_id, None)
            if seq is not None and request_id in self._outputs:
                self._outputs[request_id].append(self._output(request))
        return seq is not None

    def step(self) -> List[RequestOutput]:
        """Runs one model step; an output for every sequence that took part."""
        with self._lock:
            outputs = self._step()
            for out in outputs:
                if out.request_id in self._outputs:
                    self._outputs[out.request_id].append(out)
        return outputs

    def _step(self) -> List[RequestOutput]:
        batch = [self._requests[seq.request_id] for seq in self.scheduler.schedule()]
        token_ids = []
        prompt_tokens = sum(r.seq.num_scheduled_tokens for r in batch
                            if r.seq.num_computed_tokens < r.seq.num_prompt_tokens)
        if batch:
            start = time.perf_counter()
            token_ids = self.runner.run(batch)
            self._add_step_time(batch, time.perf_counter() - start - self.runner.last_vision_seconds)
            self.scheduler.postprocess([r.seq for r in batch], token_ids)
        ahead = [self._requests[s.request_id] for s in list(self.scheduler.running) + list(self.scheduler.waiting)
                 if s.media_in_progress]
        if not self.runner.advance_vision(ahead, prompt_tokens) and not batch and self.has_unfinished():
            raise RuntimeError("the scheduler could not schedule any waiting request")
        return [self._after_token(r) for r, token in zip(batch, token_ids) if token is not None]

    @staticmethod
    def _add_step_time(batch: List[Request], seconds: float) -> None:
        """Wall time of the step without the vision tower, to prefill (the step computes prompt
        tokens, or recomputes) or decode of each request."""
        for r in batch:
            if r.seq.num_computed_tokens < r.seq.num_prompt_tokens:
                r.timings.prefill += seconds
            else:
                r.timings.decode += seconds

    def _after_token(self, request: Request) -> RequestOutput:
        seq = request.seq
        stopped = self._add_text(request, self._decode(request, seq.token_ids[-1]))
        reason = "stop" if stopped else self._finish_reason(request)
        if reason is not None and not stopped and self._add_text(request, self._decode(request)):
            reason = "stop"                       # held-back text completed a stop string
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self._requests.pop(request.request_id, None)
        return self._output(request)

    @staticmethod
    def _decode(request: Request, token_id: Optional[int] = None) -> str:
        """The text a new token completes (None: flush what is held back); '' without a tokenizer."""
        if request.decoder is None:
            return ""
        return request.decoder.flush() if token_id is None else request.decoder.push(token_id)

    @staticmethod
    def _add_text(request: Request, text: str) -> bool:
        """Appends decoded text; True if it completed a stop string (the text is cut before it)."""
        request.text += text
        params = request.params
        if not text or not params.stop or request.seq.num_completion_tokens < params.min_new_tokens:
            return False
        cut = find_stop(request.text, params.stop, len(text))
        if cut is None:
            return False
        request.text = request.text[:cut]
        return True

    def _finish_reason(self, request: Request) -> Optional[str]:
        """"stop" for an EOS / stop id (once min_new_tokens exist), "length" at a length limit."""
        seq, params = request.seq, request.params
        if seq.token_ids[-1] in request.stop_ids and seq.num_completion_tokens >= params.min_new_tokens:
            return "stop"
        if seq.num_completion_tokens >= params.max_new_tokens or seq.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    @staticmethod
    def _output(request: Request) -> RequestOutput:
        seq = request.seq
        end = stream_safe_end(request.text, request.params.stop, seq.is_finished)
        delta = request.text[request.num_streamed_chars:end]
        request.num_streamed_chars = max(request.num_streamed_chars, end)
        return RequestOutput(seq.request_id, request.text, seq.completion_token_ids, seq.is_finished,
                             seq.finish_reason, Usage(seq.num_prompt_tokens, seq.num_completion_tokens,
                                                      seq.num_cached_tokens or 0), request.timings, delta,
                             list(request.logprobs) if request.params.logprobs is not None else None)

    def add_requests(self, requests: List[PromptInputs], sampling) -> List[str]:
        """Adds the requests (all or none) and opens an output queue for each; `follow(ids)` reads
        them (a caller that adds requests must follow them, or abort them)."""
        params = sampling if isinstance(sampling, list) else [sampling] * len(requests)
        if len(params) != len(requests):
            raise ValueError(f"{len(params)} SamplingParams given for {len(requests)} requests")
        with self._lock:
            ids = []
            try:
                for r, p in zip(requests, params):
                    ids.append(self.add_request(r, p))
                    self._outputs[ids[-1]] = deque()
            except Exception:
                self._close(ids)
                raise
        return ids

    def follow(self, ids: List[str]) -> Iterator[RequestOutput]:
        """Outputs of `ids` until all finish; closing it early aborts those still running. Safe from
        several threads at once: whichever thread holds the lock runs the step and files every
        output under its own request."""
        live = dict.fromkeys(ids)                 # an ordered set
        try:
            while live:
                time.sleep(0)     # between steps, let threads waiting on the lock add their requests
                for out in self._collect(live):
                    if out.finished:
                        live.pop(out.request_id)
                    yield out
        finally:
            self._close(ids)

    def _collect(self, live) -> List[RequestOutput]:
        with self._lock:
            if not any(self._outputs[r] for r in live):
                if not self.has_unfinished():
                    raise RuntimeError(f"requests {sorted(live)} are neither running nor finished")
                self.step()                       # a prefill chunk may give no output yet
            return [self._outputs[r].popleft() for r in live for _ in range(len(self._outputs[r]))]

    def _close(self, ids: List[str]) -> None:
        """Aborts those still running (the caller stopped early) and drops their queues."""
        with self._lock:
            for request_id in ids:
                self.abort(request_id)
                self._outputs.pop(request_id, None)

    def stream(self, requests: List[PromptInputs],
               sampling: Union[SamplingParams, List[SamplingParams]]) -> Iterator[RequestOutput]:
        """Yields outputs whose text grew (`delta`) or that finished, step by step."""
        for out in self.follow(self.add_requests(requests, sampling)):
            if out.delta or out.finished:
                yield out

    def generate(self, requests: List[PromptInputs],
                 sampling: Union[SamplingParams, List[SamplingParams]]) -> List[RequestOutput]:
        """Final outputs, in the order of `requests` (finish_reason "abort" if aborted)."""
        ids = self.add_requests(requests, sampling)
        final = {out.request_id: out for out in self.follow(ids) if out.finished}
        return [final[i] for i in ids]

    def prompt_logits(self, requests: List[PromptInputs],
                      continuations: Optional[List[List[int]]] = None) -> List[np.ndarray]:
        """Logits at every position of each prompt, followed by its continuation tokens if given:
        (prompt + continuation tokens, vocab) per request. The prompts are prefilled together in
        one step, then each continuation token is fed as a decode step, through the same runner
        and paged KV cache as generate(); nothing is sampled. For parity checks and scoring."""
        continuations = continuations or [[] for _ in requests]
        if len(continuations) != len(requests):
            raise ValueError(f"{len(continuations)} continuations given for {len(requests)} requests")
        blocks = self.scheduler.block_manager
        with self._lock:
            batch = [self._new_request(r, SamplingParams()) for r in requests]
            self._check_fits([r.seq for r in batch], continuations)
            taken = []
            try:
                for r in batch:
                    blocks.allocate(r.seq, use_cache=False)
                    taken.append(r)
                    r.seq.num_scheduled_tokens = r.seq.num_tokens
                logits = [[rows.numpy()] for rows in self.runner.logits(batch)]
                for step in range(max(len(c) for c in continuations)):
                    live = [(r, c[step], out) for r, c, out in zip(batch, continuations, logits) if step < len(c)]
                    for r, token, _ in live:
                        r.seq.num_computed_tokens += r.seq.num_scheduled_tokens
                        r.seq.append_token(token)
                        blocks.append_slot(r.seq)
                        r.seq.num_scheduled_tokens = 1
                    rows = self.runner.logits([r for r, _, _ in live])
                    for (_, _, out), row in zip(live, rows):
                        out.append(row.numpy())
            finally:
                for r in taken:
                    blocks.free(r.seq)
        return [np.concatenate(out) for out in logits]

    def _check_fits(self, seqs: List[Sequence], continuations: List[List[int]]) -> None:
        """prompt_logits runs beside the scheduler: the prompts and continuations must fit now."""
        blocks = self.scheduler.block_manager
        need = sum(blocks_for(s.num_tokens + len(c), blocks.block_size) for s, c in zip(seqs, continuations))
        tokens = sum(s.num_tokens for s in seqs)
        if need > blocks.num_free_blocks or tokens > self.config.max_num_batched_tokens:
            raise ValueError(f"{len(seqs)} prompt(s) of {tokens} tokens with their continuations need {need} "
                             f"free KV cache blocks and a step of {tokens} tokens; {blocks.num_free_blocks} "
                             f"blocks are free and a step takes {self.config.max_num_batched_tokens} tokens")
