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
        self.head_dim, self.theta = head_dim, theta
        self.bounds = [sum(mrope_section[:i]) for i in range(len(mrope_section) + 1)]   # [0, 16, 40, 64]
        self.inv_freq = inverse_frequencies(head_dim, theta)          # (D/2,)

    def __call__(self, positions):
        # traced (paddle.jit.to_static): inv_freq built in the graph, as jit.save keeps no loose tensors
        inv_freq = self.inv_freq if paddle.in_dynamic_mode() else inverse_frequencies(self.head_dim, self.theta)
        freqs = positions.astype("float32").unsqueeze(-1) * inv_freq                     # (3, T, D/2)
        # each section of frequencies takes its angles from its own axis (slices, no index tensor)
        angles = paddle.concat([freqs[axis, :, lo:hi] for axis, (lo, hi) in
                                enumerate(zip(self.bounds[:-1], self.bounds[1:]))], axis=-1)   # (T, D/2)
        emb = paddle.concat([angles, angles], axis=-1)
        return emb.cos(), emb.sin()
