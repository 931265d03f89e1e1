"""Non-causal attention restricted to blocks along the token axis (one block per frame/window)."""
from collections import defaultdict

import numpy as np
import paddle
import paddle.nn.functional as F


def block_diagonal_attention(q, k, v, cu_seqlens, scale: float):
    """q, k, v (N, H, D); cu_seqlens host list [0, ..., N]. Tokens attend only within their block.

    Blocks of equal length are batched together: (G, H, L, D) per distinct length L.
    """
    by_len = defaultdict(list)
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:]):
        if end > start:
            by_len[end - start].append(start)
    outs, order = [], []
    for length, starts in by_len.items():
        idx = (np.asarray(starts)[:, None] + np.arange(length)[None, :]).reshape(-1)
        order.append(idx)
        outs.append(_attend(*(_gather_blocks(t, idx, len(starts), length) for t in (q, k, v)), scale))
    out = paddle.concat(outs, axis=0)                                # blocks in grouped order
    inverse = np.argsort(np.concatenate(order))
    return paddle.gather(out, paddle.to_tensor(inverse))


def _gather_blocks(t, idx, groups, length):
    """(N, H, D) -> (G, H, L, D)."""
    x = paddle.gather(t, paddle.to_tensor(idx)) if len(idx) != t.shape[0] else t
    return x.reshape([groups, length, t.shape[1], t.shape[2]]).transpose([0, 2, 1, 3])


def _attend(q, k, v, scale):
    probs = F.softmax(paddle.matmul(q, k, transpose_y=True) * scale, axis=-1)
    out = paddle.matmul(probs, v)                                    # (G, H, L, D)
    return out.transpose([0, 2, 1, 3]).reshape([-1, q.shape[1], q.shape[3]])
