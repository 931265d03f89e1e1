"""The one dataclass that carries batch layout from the engine to the attention layers.

Tokens of all sequences in a step are packed along one axis (no padding):
q/k/v are (T, heads, head_dim) with T = sum of query lengths.

KV cache, per layer, two tensors (key, value) of shape
    (num_blocks * block_size, num_kv_heads, head_dim)      # "slot-major"
Slot s holds the token at offset s % block_size of block s // block_size.
A sequence's token at position p lives in slot
    block_tables[i][p // block_size] * block_size + p % block_size.

Under paddle.jit.to_static (an exported decoder step) the host lists are unknown: query_lens and
context_lens are None and the per-token layout comes as tensors (token_seq, token_ctx, as
paged_attention.token_layout builds them).
"""
from dataclasses import dataclass
from typing import List, Optional

import paddle


@dataclass
class AttentionMetadata:
    query_lens: Optional[List[int]]     # new tokens per sequence this step (host ints)
    context_lens: Optional[List[int]]   # tokens in cache per sequence after this step, >= query_lens
    slot_mapping: paddle.Tensor    # (T,) int64: cache slot written by each new token
    block_tables: paddle.Tensor    # (B, max_blocks) int32, -1 past the end
    block_size: int
    cu_query_lens: Optional[paddle.Tensor] = None   # (B+1,) int32, prefix sums of query_lens
    token_seq: Optional[paddle.Tensor] = None       # (T,) int32: each token's sequence (traced steps)
    token_ctx: Optional[paddle.Tensor] = None       # (T,) int32: cache positions each token sees

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens)

    @property
    def is_decode_only(self) -> bool:
        return all(q == 1 for q in self.query_lens)
