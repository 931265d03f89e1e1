"""Hands out fixed-size KV cache blocks to sequences, and with prefix caching keeps full blocks
findable by their content.

Block b holds cache slots b * block_size .. (b + 1) * block_size - 1 (see
`paddle_qwenvl.ops.attention_metadata`). With prefix caching every full block is named by a hash of
its tokens, the media behind its placeholder tokens and everything before it (`block_hashes`). A new
sequence starts from the longest run of cached blocks that matches its own, shares them by
reference count, and computes only the rest. Freed blocks keep their contents and stay findable
until the allocator needs them: the least recently freed is reused first. Pure Python over ints.
"""
import hashlib
from collections import OrderedDict
from typing import List, Optional, Sequence as Seq, Tuple

import numpy as np

from .sequence import Sequence

BLOCK_SIZE = 16       # the default (engine, Predictor, CLI): prefix caching reuses whole blocks


def blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


def block_hash(parent: bytes, token_ids: Seq[int], media_keys: Seq[bytes] = ()) -> bytes:
    """The name of a full block: its parent's name, its token ids and the keys of the media whose
    placeholder tokens it holds (so two images behind the same placeholder ids differ)."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(np.asarray(token_ids, dtype=np.int64).tobytes())
    for key in media_keys:
        h.update(key)
    return h.digest()


def extend_block_hashes(seq: Sequence, block_size: int) -> List[bytes]:
    """seq.block_hashes, extended to every full block of its tokens."""
    hashes = seq.block_hashes
    for i in range(len(hashes), seq.num_tokens // block_size):
        start, end = i * block_size, (i + 1) * block_size
        keys = [key for first, last, key in seq.media_spans if first < end and last > start]
        hashes.append(block_hash(hashes[-1] if hashes else b"", seq.token_ids[start:end], keys))
    return hashes


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = False):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1; got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: List[Optional[bytes]] = [None] * num_blocks   # set while a block is findable
        self.cached = {}                              # hash -> block id
        self.free_blocks = OrderedDict.fromkeys(range(num_blocks))      # ref count 0; reused oldest first

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free_blocks)

    def _missing(self, seq: Sequence) -> int:
        """Blocks still needed to hold all of seq's tokens."""
        return max(0, blocks_for(seq.num_tokens, self.block_size) - len(seq.block_table))

    def cached_prefix(self, seq: Sequence) -> List[int]:
        """Ids of the cached blocks that hold seq's leading tokens, stopping short of its last token
        (which must be computed for its logits)."""
        if not self.enable_caching:
            return []
        hits = []
        for h in extend_block_hashes(seq, self.block_size)[:(seq.num_tokens - 1) // self.block_size]:
            block = self.cached.get(h)
            if block is None:
                break
            hits.append(block)
        return hits

    def _new_blocks_needed(self, seq: Sequence) -> Tuple[List[int], int]:
        """(cached prefix blocks, how many free blocks allocating seq takes)."""
        hits = self.cached_prefix(seq)
        revived = sum(1 for b in hits if self.ref_counts[b] == 0)       # cached, but in the free list
        return hits, self._missing(seq) - len(hits) + revived

    def can_allocate(self, seq: Sequence) -> bool:
        if seq.block_table:
            return False
        return self._new_blocks_needed(seq)[1] <= self.num_free_blocks

    def allocate(self, seq: Sequence, use_cache: bool = True) -> int:
        """Blocks for every token of a sequence about to be (re)prefilled. Returns how many of its
        leading tokens are already in the cache (their blocks shared; 0 without prefix caching);
        the caller sets num_computed_tokens from it."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.request_id} already holds blocks {seq.block_table}")
        hits, needed = self._new_blocks_needed(seq) if use_cache else ([], self._missing(seq))
        if needed > self.num_free_blocks:
            raise RuntimeError(f"{needed} blocks needed, {self.num_free_blocks} free")
        for block in hits:
            self._ref(block)
        seq.block_table = list(hits)
        seq.num_cached_blocks = len(hits)               # findable already
        self._take(seq, self._missing(seq))
        return len(hits) * self.block_size

    def can_append(self, seq: Sequence) -> bool:
        """Room for the cache entry of seq's newest token (a decode step)?"""
        return self._missing(seq) <= self.num_free_blocks

    def append_slot(self, seq: Sequence) -> None:
        """Adds a block when the newest token starts a new one."""
        if not self.can_append(seq):
            raise RuntimeError(f"no free block for sequence {seq.request_id}")
        self._take(seq, self._missing(seq))

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Makes seq's computed full blocks findable (after a step wrote them)."""
        if not self.enable_caching:
            return
        hashes = extend_block_hashes(seq, self.block_size)
        full = min(seq.num_computed_tokens // self.block_size, len(hashes))
        for i in range(seq.num_cached_blocks, full):
            block, h = seq.block_table[i], hashes[i]
            if self.block_hash[block] is None and h not in self.cached:
                self.block_hash[block] = h
                self.cached[h] = block
        seq.num_cached_blocks = max(seq.num_cached_blocks, full)

    def free(self, seq: Sequence) -> None:
        """Releases seq's blocks; the last ones of the sequence become the first to be reused."""
        for block in reversed(seq.block_table):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free_blocks[block] = None
        seq.block_table = []
        seq.num_computed_tokens = 0
        seq.num_cached_blocks = 0

    def _ref(self, block: int) -> None:
        if self.ref_counts[block] == 0:
            del self.free_blocks[block]
        self.ref_counts[block] += 1

    def _take(self, seq: Sequence, n: int) -> None:
        for _ in range(n):
            block, _ = self.free_blocks.popitem(last=False)
            h = self.block_hash[block]
            if h is not None:                          # evicted: its contents are overwritten
                self.block_hash[block] = None
                del self.cached[h]
            self.ref_counts[block] = 1
            seq.block_table.append(block)
