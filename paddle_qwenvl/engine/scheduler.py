"""Continuous batching: which sequences run in the next step, and with how many tokens.

Each step first gives every decoding sequence one token, preempting the newest running sequences
(recompute: blocks freed, back to the head of the waiting queue) when blocks run out. Then running
sequences still prefilling (a long prompt in chunks) continue, and, if nothing was preempted,
waiting sequences are admitted while the limits allow: `max_num_seqs` sequences and
`max_num_batched_tokens` tokens per step, and free blocks. An admitted sequence gets blocks for all
its tokens and starts after its cached prefix (prefix caching). A prompt that fits one step is
prefilled whole, waiting for a step with room; a longer one is prefilled in chunks. A chunk stops
before the placeholders of a media whose vision tower has not finished (`Sequence.num_ready_tokens`).
Pure Python over ints and lists.
"""
from collections import deque
from typing import List, Optional

from .block_manager import BlockManager
from .sequence import Sequence, SequenceStatus


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        if max_num_seqs < 1 or max_num_batched_tokens < max_num_seqs:
            raise ValueError(f"need 1 <= max_num_seqs <= max_num_batched_tokens; "
                             f"got {max_num_seqs}, {max_num_batched_tokens}")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque = deque()
        self.running: deque = deque()
        self.num_preemptions = 0          # total so far, for tests and logs

    def add(self, seq: Sequence) -> None:
        capacity = self.block_manager.num_blocks * self.block_manager.block_size
        if seq.num_tokens > capacity:
            raise ValueError(f"request {seq.request_id} has {seq.num_tokens} tokens; at most {capacity} "
                             f"fit the KV cache")
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> List[Sequence]:
        """The sequences of the next step, each with `num_scheduled_tokens` set."""
        batch: List[Sequence] = []
        preempted = self._schedule_decodes(batch)
        budget = self._schedule_chunks(batch, self.max_num_batched_tokens - len(batch))
        if not preempted:
            self._schedule_prefills(batch, budget)
        return batch

    def _schedule_decodes(self, batch: List[Sequence]) -> bool:
        """Every decoding sequence gets one token (running never exceeds max_num_seqs)."""
        kept, preempted = deque(), False
        while self.running:
            seq = self.running.popleft()
            if seq.num_new_tokens > 1:                # still prefilling: _schedule_chunks
                kept.append(seq)
                continue
            while not self.block_manager.can_append(seq) and self.running:
                self.preempt(self.running.pop())    # newest first
                preempted = True
            if not self.block_manager.can_append(seq):
                self.preempt(seq)
                preempted = True
                continue
            self.block_manager.append_slot(seq)
            seq.num_scheduled_tokens = 1
            batch.append(seq)
            kept.append(seq)
        self.running = kept
        return preempted

    def _schedule_chunks(self, batch: List[Sequence], budget: int) -> int:
        """Running sequences still prefilling take what the step has left, oldest first."""
        for seq in self.running:
            if seq.num_new_tokens > 1 and budget > 0 and seq.num_ready_tokens > 0:
                seq.num_scheduled_tokens = min(seq.num_ready_tokens, budget)
                budget -= seq.num_scheduled_tokens
                batch.append(seq)
        return budget

    def _schedule_prefills(self, batch: List[Sequence], budget: int) -> None:
        blocks = self.block_manager
        while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            if not blocks.can_allocate(seq):
                break
            remaining = seq.num_tokens - len(blocks.cached_prefix(seq)) * blocks.block_size
            if budget < remaining <= self.max_num_batched_tokens:
                break                             # fits whole in a later step
            self.waiting.popleft()
            seq.num_computed_tokens = blocks.allocate(seq)
            if seq.num_cached_tokens is None:     # first admission: what usage reports
                seq.num_cached_tokens = min(seq.num_computed_tokens, seq.num_prompt_tokens)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            seq.num_scheduled_tokens = min(seq.num_ready_tokens, budget)
            if seq.num_scheduled_tokens:          # else: its first tokens wait for the vision tower
                budget -= seq.num_scheduled_tokens
                batch.append(seq)

    def postprocess(self, batch: List[Sequence], token_ids: List[Optional[int]]) -> None:
        """After a step: the scheduled tokens are now cached, and each sequence that reached its
        newest token got a new one (None: a prefill chunk that did not reach it yet)."""
        for seq, token_id in zip(batch, token_ids):
            seq.num_computed_tokens += seq.num_scheduled_tokens
            seq.num_scheduled_tokens = 0
            self.block_manager.cache_full_blocks(seq)
            if token_id is not None:
                seq.append_token(token_id)

    def preempt(self, seq: Sequence) -> None:
        """Recompute later: free the blocks, requeue at the head of the waiting queue."""
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Marks seq finished and frees its blocks (it may be waiting or running)."""
        for queue in (self.running, self.waiting):
            if seq in queue:
                queue.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def abort(self, request_id: str) -> Optional[Sequence]:
        """Stops a request wherever it is; returns its sequence, or None if it is not here."""
        for seq in list(self.running) + list(self.waiting):
            if seq.request_id == request_id:
                self.finish(seq, "abort")
                return seq
        return None
