import pytest

from paddle_qwenvl.engine.block_manager import BlockManager
from paddle_qwenvl.engine.scheduler import Scheduler
from paddle_qwenvl.engine.sequence import Sequence, SequenceStatus


def make(num_blocks=8, block_size=4, max_num_seqs=4, max_num_batched_tokens=32):
    return Scheduler(BlockManager(num_blocks, block_size), max_num_seqs, max_num_batched_tokens)


def seq_of(n, rid=None):
    return Sequence(list(range(1, n + 1)), request_id=rid)


def step(sched, token=0):
    batch = sched.schedule()
    sched.postprocess(batch, [token] * len(batch))
    return batch


def test_prefill_then_decode_in_following_steps():
    sched = make()
    a, b = seq_of(5, "a"), seq_of(3, "b")
    sched.add(a)
    sched.add(b)
    batch = sched.schedule()
    assert batch == [a, b] and [s.num_scheduled_tokens for s in batch] == [5, 3]
    sched.postprocess(batch, [9, 9])
    assert a.num_computed_tokens == 5 and a.num_tokens == 6
    batch = sched.schedule()
    assert batch == [a, b] and [s.num_scheduled_tokens for s in batch] == [1, 1]


def test_max_num_seqs_limits_admission():
    sched = make(max_num_seqs=2)
    seqs = [seq_of(2, str(i)) for i in range(3)]
    for s in seqs:
        sched.add(s)
    assert step(sched) == seqs[:2]
    assert list(sched.waiting) == [seqs[2]]
    assert step(sched) == seqs[:2]       # still full: decodes only


def test_max_num_batched_tokens_limits_prefill():
    sched = make(max_num_batched_tokens=10)
    a, b = seq_of(6, "a"), seq_of(6, "b")
    sched.add(a)
    sched.add(b)
    assert step(sched) == [a]
    batch = sched.schedule()             # a decodes (1 token) + b prefills (6) = 7 <= 10
    assert batch == [a, b] and b.num_scheduled_tokens == 6


def test_queueing_when_blocks_run_out():
    sched = make(num_blocks=3, block_size=4)
    a, b = seq_of(8, "a"), seq_of(8, "b")  # 2 blocks each, 3 blocks total
    sched.add(a)
    sched.add(b)
    assert step(sched) == [a]
    assert b.status == SequenceStatus.WAITING and b.block_table == []


def test_preemption_by_recompute_frees_newest_and_requeues_at_head():
    sched = make(num_blocks=2, block_size=4)
    a, b = seq_of(4, "a"), seq_of(4, "b")
    sched.add(a)
    sched.add(b)
    assert step(sched) == [a, b]         # each now has 5 tokens, 1 block: both need a 2nd block
    batch = sched.schedule()
    assert batch == [a]
    assert list(sched.waiting) == [b]
    assert b.block_table == [] and b.num_computed_tokens == 0 and b.num_preemptions == 1
    assert len(a.block_table) == 2


def test_preempted_sequence_is_reprefilled_with_its_output():
    sched = make(num_blocks=3, block_size=4, max_num_seqs=2)
    a, b = seq_of(4, "a"), seq_of(4, "b")
    sched.add(a)
    sched.add(b)
    step(sched)                          # a, b: 5 tokens each
    step(sched)                          # a takes the last free block; b has none: preempted
    assert b.status == SequenceStatus.WAITING
    sched.finish(a, "stop")
    batch = sched.schedule()
    assert batch == [b] and b.num_scheduled_tokens == 5   # prompt 4 + 1 output token recomputed


def test_all_requests_finish_with_a_tiny_cache():
    sched = make(num_blocks=4, block_size=2, max_num_seqs=4, max_num_batched_tokens=8)
    seqs = [seq_of(3, str(i)) for i in range(4)]
    for s in seqs:
        sched.add(s)
    for _ in range(200):
        if not sched.has_unfinished():
            break
        batch = step(sched)
        assert batch, "scheduler must make progress"
        used = sum(len(s.block_table) for s in sched.running)
        assert used + sched.block_manager.num_free_blocks == 4
        for s in batch:
            if s.num_completion_tokens == 4:
                sched.finish(s, "length")
    assert all(s.is_finished and s.num_completion_tokens == 4 for s in seqs)
    assert sum(s.num_preemptions for s in seqs) > 0
    assert sched.block_manager.num_free_blocks == 4


def test_abort_waiting_and_running():
    sched = make(max_num_seqs=1)
    a, b = seq_of(2, "a"), seq_of(2, "b")
    sched.add(a)
    sched.add(b)
    step(sched)
    assert sched.abort("a") is a and a.finish_reason == "abort" and a.block_table == []
    assert sched.abort("b") is b and not sched.has_unfinished()
    assert sched.abort("zzz") is None
    assert sched.block_manager.num_free_blocks == 8


def test_too_long_request_rejected():
    sched = make(num_blocks=2, block_size=4)
    with pytest.raises(ValueError, match="at most 8"):
        sched.add(seq_of(9))


def test_invalid_limits_rejected():
    with pytest.raises(ValueError, match="max_num_seqs"):
        make(max_num_seqs=0)


def test_prefill_stops_before_media_still_in_the_vision_tower():
    """Tokens up to the first unfinished media's placeholders run; the rest wait (holding their
    blocks, counted against max_num_seqs) until the engine marks the media done."""
    sched = make(max_num_seqs=2)
    a, b, c = seq_of(12, "a"), seq_of(6, "b"), seq_of(3, "c")
    a.media_in_progress = [(3, 8)]
    b.media_in_progress = [(0, 4)]
    for s in (a, b, c):
        sched.add(s)
    batch = sched.schedule()
    assert batch == [a] and a.num_scheduled_tokens == 3         # b admitted with nothing ready
    assert list(sched.running) == [a, b] and list(sched.waiting) == [c]
    sched.postprocess(batch, [None])
    assert sched.schedule() == [] and a.num_ready_tokens == 0
    a.media_in_progress, b.media_in_progress = [], []
    batch = sched.schedule()
    assert batch == [a, b] and [s.num_scheduled_tokens for s in batch] == [9, 6]


def test_media_inside_the_computed_prefix_does_not_hold_back_the_rest():
    s = seq_of(10)
    s.media_in_progress = [(1, 4)]
    s.num_computed_tokens = 4                 # e.g. a cached prefix that covers the media
    assert s.num_ready_tokens == 6
