"""The engine loop: requests in, one scheduled model step at a time, outputs (or text deltas) out."""
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator, List, Optional, Union

from ..sampling import SamplingParams, make_generator
from .block_manager import BlockManager
from ..processing.tokenizer import IncrementalDecoder
from .detokenizer import find_stop, stream_safe_end
from .inputs import PromptInputs
from .model_runner import ModelRunner
from .outputs import RequestOutput, Usage
from .scheduler import Scheduler
from .sequence import Sequence


@dataclass
class EngineConfig:
    max_model_len: int = 4096            # prompt + output tokens of one request
    block_size: int = 64                 # tokens per KV cache block
    kv_cache_memory: int = 1 << 30       # bytes for all layers' key and value caches (an upper
                                         # bound: no more than max_num_seqs x max_model_len tokens;
                                         # float32, bf16 for a bfloat16 model)
    max_num_seqs: int = 16               # sequences per step
    max_num_batched_tokens: Optional[int] = None   # tokens per step; default max_model_len

    def __post_init__(self):
        for name in ("max_model_len", "block_size", "kv_cache_memory", "max_num_seqs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_num_batched_tokens is None:
            self.max_num_batched_tokens = max(self.max_model_len, self.max_num_seqs)
        if self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(f"max_num_batched_tokens={self.max_num_batched_tokens} must be >= "
                             f"max_model_len={self.max_model_len}: a whole prompt is prefilled in one step")


class LLMEngine:
    def __init__(self, model, tokenizer, config: EngineConfig):
        self.config = config
        self.tokenizer = tokenizer
        self.eos_ids = list(model.config.eos_token_ids)
        # no more blocks than max_num_seqs sequences of max_model_len tokens can use
        most = config.max_num_seqs * -(-config.max_model_len // config.block_size)
        self.runner = ModelRunner(model, config.block_size, config.kv_cache_memory, most)
        capacity = self.runner.num_blocks * config.block_size
        if capacity < config.max_model_len:
            raise ValueError(f"kv_cache_memory={config.kv_cache_memory} bytes holds {capacity} tokens, "
                             f"fewer than max_model_len={config.max_model_len}: raise kv_cache_memory "
                             f"or lower max_model_len")
        blocks = BlockManager(self.runner.num_blocks, config.block_size)
        self.scheduler = Scheduler(blocks, config.max_num_seqs, config.max_num_batched_tokens)
        self._sequences = {}              # request id -> unfinished Sequence
        self._outputs = {}                # request id -> queued outputs (generate/stream)
        self._lock = threading.RLock()    # one step at a time; see _follow

    def add_request(self, inputs: PromptInputs, params: SamplingParams,
                    request_id: Optional[str] = None) -> str:
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling must be a SamplingParams, got {type(params).__name__}")
        if len(inputs.input_ids) >= self.config.max_model_len:
            raise ValueError(f"the prompt has {len(inputs.input_ids)} tokens; max_model_len="
                             f"{self.config.max_model_len} leaves no room to generate: shorten the "
                             f"prompt (smaller images/videos) or raise max_model_len")
        self._check_token_ids(inputs.input_ids + params.stop_token_ids)
        seq = Sequence(inputs.input_ids, params, request_id, mm_inputs=inputs)
        self.runner.prepare_prompt(seq)
        seq.generator = make_generator(params)
        seq.decoder = IncrementalDecoder(self.tokenizer)
        with self._lock:
            if seq.request_id in self._sequences:
                raise ValueError(f"request id {seq.request_id!r} is already running")
            self.scheduler.add(seq)
            self._sequences[seq.request_id] = seq
        return seq.request_id

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
            self._sequences.pop(request_id, None)
            if seq is not None and request_id in self._outputs:
                self._outputs[request_id].append(self._output(seq))
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
        batch = self.scheduler.schedule()
        if not batch:
            if self.has_unfinished():
                raise RuntimeError("the scheduler could not schedule any waiting request")
            return []
        start = time.perf_counter()
        token_ids = self.runner.run(batch, self.eos_ids)
        self._add_step_time(batch, time.perf_counter() - start - self.runner.last_vision_seconds)
        self.scheduler.postprocess(batch, token_ids)
        return [self._after_token(seq) for seq in batch]

    @staticmethod
    def _add_step_time(batch: List[Sequence], seconds: float) -> None:
        """Wall time of the step without the vision tower, to prefill or decode of each sequence."""
        for seq in batch:
            if seq.num_computed_tokens == 0:
                seq.timings.prefill += seconds
            else:
                seq.timings.decode += seconds

    def _after_token(self, seq: Sequence) -> RequestOutput:
        stopped = self._add_text(seq, seq.decoder.push(seq.token_ids[-1]))
        reason = "stop" if stopped else self._finish_reason(seq)
        if reason is not None and not stopped and self._add_text(seq, seq.decoder.flush()):
            reason = "stop"                       # held-back text completed a stop string
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self._sequences.pop(seq.request_id, None)
        return self._output(seq)

    @staticmethod
    def _add_text(seq: Sequence, text: str) -> bool:
        """Appends decoded text; True if it completed a stop string (the text is cut before it)."""
        seq.output_text += text
        params = seq.sampling_params
        if not text or not params.stop or seq.num_completion_tokens < params.min_new_tokens:
            return False
        cut = find_stop(seq.output_text, params.stop, len(text))
        if cut is None:
            return False
        seq.output_text = seq.output_text[:cut]
        return True

    def _finish_reason(self, seq: Sequence) -> Optional[str]:
        """"stop" for an EOS / stop id (once min_new_tokens exist), "length" at a length limit."""
        params, token = seq.sampling_params, seq.token_ids[-1]
        stop_ids = params.stop_token_ids + ([] if params.ignore_eos else self.eos_ids)
        if token in stop_ids and seq.num_completion_tokens >= params.min_new_tokens:
            return "stop"
        if seq.num_completion_tokens >= params.max_new_tokens or seq.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    def _output(self, seq: Sequence) -> RequestOutput:
        end = stream_safe_end(seq.output_text, seq.sampling_params.stop, seq.is_finished)
        delta = seq.output_text[seq.num_streamed_chars:end]
        seq.num_streamed_chars = max(seq.num_streamed_chars, end)
        return RequestOutput(seq.request_id, seq.output_text, seq.completion_token_ids, seq.is_finished,
                             seq.finish_reason, Usage(seq.num_prompt_tokens, seq.num_completion_tokens),
                             seq.timings, delta)

    def _add_all(self, requests: List[PromptInputs], sampling) -> List[str]:
        """Adds the requests (all or none) and opens an output queue for each."""
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

    def _follow(self, ids: List[str]) -> Iterator[RequestOutput]:
        """Outputs of `ids` until all finish. Safe from several threads at once: whichever thread
        holds the lock runs the step and files every output under its own request."""
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
            if not any(self._outputs[r] for r in live) and not self.step():
                raise RuntimeError(f"requests {sorted(live)} are neither running nor finished")
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
        for out in self._follow(self._add_all(requests, sampling)):
            if out.delta or out.finished:
                yield out

    def generate(self, requests: List[PromptInputs],
                 sampling: Union[SamplingParams, List[SamplingParams]]) -> List[RequestOutput]:
        """Final outputs, in the order of `requests` (finish_reason "abort" if aborted)."""
        ids = self._add_all(requests, sampling)
        final = {out.request_id: out for out in self._follow(ids) if out.finished}
        return [final[i] for i in ids]
