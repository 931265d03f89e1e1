"""Token embedding read from a quantized lm_head, for checkpoints with tie_word_embeddings.

With a quantized lm_head the table lives once, as its int8 / int4 rows (vocab, hidden): a lookup
dequantizes only the rows asked for. A float32 copy beside it would cost 4 bytes per weight
(0.9 GB on Qwen2-VL-2B, 1.2 GB on Qwen2.5-VL-3B) for a few rows read per step.
"""
import paddle
import paddle.nn as nn

from ..ops.weight_only_linear import dequantize_weight


class TiedQuantizedEmbedding(nn.Layer):
    def __init__(self, lm_head):
        super().__init__()
        self._head = (lm_head,)     # a tuple, not a sublayer: its buffers are saved once, as lm_head's

    def forward(self, ids):
        """ids int64 (...) -> (..., hidden) float32, each row as the lm_head dequantizes it."""
        head = self._head[0]
        flat = ids.reshape([-1])
        rows = dequantize_weight(paddle.gather(head.qweight, flat), paddle.gather(head.scales, flat),
                                 head.algo, head.group_size)
        return rows.reshape(list(ids.shape) + [head.in_features])
