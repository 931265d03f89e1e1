"""Tensor parallelism in the engine: rank 0 runs it (schedules, encodes media, samples,
detokenizes); the other ranks run the decoder on the inputs rank 0 broadcasts, so no rank can
take a step of its own.

Each step rank 0 broadcasts a header (int64: command, T tokens, B sequences, block table width)
and then the step's inputs: the embeddings (T, hidden) float32 with any vision embeddings already
in place (the vision tower runs on rank 0 only, once per media item), the positions (3, T) int64,
the slot mapping (T,) int64, the block tables (B, width) int32, and the query and context lengths
(2, B) int64. The followers rebuild the same AttentionMetadata and run the same forward, joining
its all-reduces; they drop its output (rank 0 alone computes logits). STOP ends the followers.
"""
import atexit

import numpy as np
import paddle

from ..distributed import broadcast, wait_for_driver
from ..ops.attention_metadata import AttentionMetadata

RUN, STOP = 1, 0


def send_step(embeds, positions, meta: AttentionMetadata) -> None:
    """Rank 0: the inputs of the forward it is about to run."""
    tokens, width = embeds.shape[0], meta.block_tables.shape[1]
    broadcast(paddle.to_tensor([RUN, tokens, meta.num_seqs, width], dtype="int64"))
    for x in (embeds, positions, meta.slot_mapping, meta.block_tables,
              paddle.to_tensor(np.array([meta.query_lens, meta.context_lens], dtype=np.int64))):
        broadcast(x)


def send_stop() -> None:
    """Rank 0, at exit: the followers leave follow()."""
    broadcast(paddle.to_tensor([STOP, 0, 0, 0], dtype="int64"))


@paddle.no_grad()
def follow(model, kv_caches, block_size: int) -> None:
    """A follower: run every step rank 0 sends until it sends STOP."""
    hidden = model.config.text.hidden_size
    while True:
        command, tokens, seqs, width = wait_for_driver(paddle.zeros([4], "int64")).numpy().tolist()
        if command == STOP:
            return
        embeds = broadcast(paddle.empty([tokens, hidden], "float32"))
        positions = broadcast(paddle.empty([3, tokens], "int64"))
        slots = broadcast(paddle.empty([tokens], "int64"))
        tables = broadcast(paddle.empty([seqs, width], "int32"))
        query_lens, context_lens = broadcast(paddle.empty([2, seqs], "int64")).numpy().tolist()
        cu = np.concatenate([[0], np.cumsum(query_lens)]).astype(np.int32)
        meta = AttentionMetadata(query_lens, context_lens, slots, tables, block_size, paddle.to_tensor(cu))
        model(embeds, positions, meta, kv_caches)


def run_tensor_parallel(runner, tp) -> None:
    """Rank 0 tells the others to stop when its process ends; the others follow its steps and then
    exit (they never return to the caller, whose script rank 0 alone runs on)."""
    if tp.is_driver:
        atexit.register(send_stop)
        return
    runner.follow()
    raise SystemExit(0)
