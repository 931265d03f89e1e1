"""Hands out fixed-size KV cache blocks to sequences (no prefix sharing).

Block b holds cache slots b * block_size .. (b + 1) * block_size - 1 (see
`paddle_qwenvl.ops.attention_metadata`). Pure Python over ints.
"""
from collections import deque

from .sequence import Sequence


def blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1; got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.free_block_ids = deque(range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids)

    def _missing(self, seq: Sequence) -> int:
        """Blocks still needed to hold all of seq's tokens."""
        return max(0, blocks_for(seq.num_tokens, self.block_size) - len(seq.block_table))

    def can_allocate(self, seq: Sequence) -> bool:
        return not seq.block_table and self._missing(seq) <= self.num_free_blocks

    def allocate(self, seq: Sequence) -> None:
        """Blocks for every token of a sequence about to be (re)prefilled."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.request_id} already holds blocks {seq.block_table}")
        if not self.can_allocate(seq):
            raise RuntimeError(f"{self._missing(seq)} blocks needed, {self.num_free_blocks} free")
        self._take(seq, self._missing(seq))

    def can_append(self, seq: Sequence) -> bool:
        """Room for the cache entry of seq's newest token (a decode step)?"""
        return self._missing(seq) <= self.num_free_blocks

    def append_slot(self, seq: Sequence) -> None:
        """Adds a block when the newest token starts a new one."""
        if not self.can_append(seq):
            raise RuntimeError(f"no free block for sequence {seq.request_id}")
        self._take(seq, self._missing(seq))

    def free(self, seq: Sequence) -> None:
        self.free_block_ids.extend(seq.block_table)
        seq.block_table = []
        seq.num_computed_tokens = 0

    def _take(self, seq: Sequence, n: int) -> None:
        for _ in range(n):
            seq.block_table.append(self.free_block_ids.popleft())
