import pytest

from paddle_qwenvl.engine.block_manager import BlockManager
from paddle_qwenvl.engine.sequence import Sequence


def seq_of(n):
    return Sequence(list(range(1, n + 1)))


def test_allocate_takes_ceil_blocks_and_free_returns_them():
    bm = BlockManager(num_blocks=5, block_size=4)
    s = seq_of(9)                        # 9 tokens -> 3 blocks
    assert bm.can_allocate(s)
    bm.allocate(s)
    assert s.block_table == [0, 1, 2]
    assert bm.num_free_blocks == 2
    bm.free(s)
    assert s.block_table == [] and s.num_computed_tokens == 0
    assert bm.num_free_blocks == 5


def test_can_allocate_false_when_blocks_short():
    bm = BlockManager(num_blocks=2, block_size=4)
    assert not bm.can_allocate(seq_of(9))
    with pytest.raises(RuntimeError, match="3 blocks needed, 2 free"):
        bm.allocate(seq_of(9))


def test_append_slot_adds_block_only_at_block_boundary():
    bm = BlockManager(num_blocks=3, block_size=4)
    s = seq_of(4)
    bm.allocate(s)                       # 1 block, full
    s.append_token(7)                    # token 5 starts block 2
    assert bm.can_append(s)
    bm.append_slot(s)
    assert len(s.block_table) == 2
    for t in range(3):                   # tokens 6..8 fit block 2
        s.append_token(t)
        bm.append_slot(s)
    assert len(s.block_table) == 2 and bm.num_free_blocks == 1


def test_can_append_false_when_no_free_block():
    bm = BlockManager(num_blocks=1, block_size=2)
    s = seq_of(2)
    bm.allocate(s)
    s.append_token(3)
    assert not bm.can_append(s)
    with pytest.raises(RuntimeError, match="no free block"):
        bm.append_slot(s)


def test_double_allocate_rejected():
    bm = BlockManager(num_blocks=4, block_size=4)
    s = seq_of(3)
    bm.allocate(s)
    assert not bm.can_allocate(s)
    with pytest.raises(RuntimeError, match="already holds blocks"):
        bm.allocate(s)


def test_freed_blocks_are_reused():
    bm = BlockManager(num_blocks=2, block_size=4)
    a, b = seq_of(4), seq_of(4)
    bm.allocate(a)
    bm.allocate(b)
    bm.free(a)
    c = seq_of(3)
    bm.allocate(c)
    assert c.block_table == [0]


def test_prefix_caching_shares_full_blocks_by_reference():
    bm = BlockManager(num_blocks=6, block_size=4, enable_caching=True)
    a = seq_of(10)                       # blocks 0, 1 full, 2 partial
    assert bm.allocate(a) == 0
    a.num_computed_tokens = 10
    bm.cache_full_blocks(a)
    b = seq_of(10)
    assert bm.cached_prefix(b) == a.block_table[:2]
    assert bm.allocate(b) == 8           # two blocks shared, the last one its own
    assert b.block_table[:2] == a.block_table[:2] and b.block_table[2] != a.block_table[2]
    assert [bm.ref_counts[i] for i in a.block_table] == [2, 2, 1]
    bm.free(a)
    assert [bm.ref_counts[i] for i in b.block_table] == [1, 1, 1] and bm.num_free_blocks == 3


def test_a_whole_cached_prompt_still_computes_its_last_token():
    bm = BlockManager(num_blocks=4, block_size=4, enable_caching=True)
    a = seq_of(8)
    bm.allocate(a)
    a.num_computed_tokens = 8
    bm.cache_full_blocks(a)
    bm.free(a)                           # cached and free: revived by the next identical prompt
    b = seq_of(8)
    assert bm.allocate(b) == 4           # the block holding the last token is recomputed
    assert bm.num_free_blocks == 2


def test_freed_cached_blocks_are_evicted_least_recently_freed_first():
    bm = BlockManager(num_blocks=2, block_size=2, enable_caching=True)
    a, b = Sequence([1, 2, 3]), Sequence([5, 6, 7])
    for s in (a, b):
        bm.allocate(s)
        s.num_computed_tokens = 2
        bm.cache_full_blocks(s)
        bm.free(s)
    c = Sequence([9, 9, 9])              # takes both blocks: a's (freed first) is evicted first
    bm.allocate(c)
    assert bm.cached == {} and all(h is None for h in bm.block_hash)


def test_same_tokens_with_other_media_hash_differently():
    a = Sequence([1, 7, 7, 7, 7, 2], media_spans=[(1, 5, b"image-a")])
    b = Sequence([1, 7, 7, 7, 7, 2], media_spans=[(1, 5, b"image-b")])
    bm = BlockManager(num_blocks=8, block_size=2, enable_caching=True)
    bm.allocate(a)
    a.num_computed_tokens = 6
    bm.cache_full_blocks(a)
    assert bm.cached_prefix(b) == []
    assert bm.cached_prefix(Sequence([1, 7, 7, 7, 7, 2], media_spans=[(1, 5, b"image-a")])) == a.block_table[:2]
