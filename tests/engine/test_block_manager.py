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
