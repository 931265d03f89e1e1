"""M-RoPE angles for the decoder. Applying them (decoder and vision tower) is ops/rotary.py's
rotary_qkv: each head x of q and k, cos/sin (T, D) -> x * cos + rotate_half(x) * sin."""
import paddle


def inverse_frequencies(dim: int, theta: float):
    return 1.0 / (theta ** (paddle.arange(0, dim, 2, dtype="float32") / dim))


class MRotaryEmbedding:
    """cos/sin (T, head_dim) for 3-axis positions (3, T).

    The head_dim/2 frequencies are split into mrope_section chunks (e.g. 16/24/24): chunk i takes
    its angle from position axis i (temporal, height, width); the second half repeats the first.
    """

    def __init__(self, head_dim: int, theta: float, mrope_section):
        self.inv_freq = inverse_frequencies(head_dim, theta)          # (D/2,)
        axis = sum(([i] * n for i, n in enumerate(mrope_section)), [])
        self.axis_of_freq = paddle.to_tensor(axis, dtype="int64")      # (D/2,) in {0,1,2}

    def __call__(self, positions):
        # (3, T, D/2): angle of every frequency for every axis, then pick each frequency's axis
        freqs = positions.astype("float32").unsqueeze(-1) * self.inv_freq
        onehot = paddle.nn.functional.one_hot(self.axis_of_freq, 3).T.unsqueeze(1)   # (3, 1, D/2)
        angles = (freqs * onehot).sum(axis=0)                                          # (T, D/2)
        emb = paddle.concat([angles, angles], axis=-1)
        return emb.cos(), emb.sin()
