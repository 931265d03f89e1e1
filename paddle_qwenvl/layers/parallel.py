"""Which part of the decoder each tensor-parallel rank holds, and the all-reduce that joins them.

Attention is split by heads: rank r holds query heads [r*H/N, (r+1)*H/N) and the KV heads they
read. With fewer KV heads than ranks (Qwen2-VL-2B, Qwen2.5-VL-3B have 2) each rank holds the one
KV head its query heads share, so a KV head is replicated on N/KV ranks, as vLLM does. The MLP is
split by intermediate columns. q/k/v and gate/up are column-parallel (rows of the HF weight);
o_proj and down_proj are row-parallel (columns of the HF weight): each rank's output is a partial
sum, all-reduced. Norms, embeddings, lm_head and the vision tower are replicated.
"""
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from ..distributed import TensorParallel, all_reduce

# HF decoder tensor name -> the part it belongs to; "model.language_model." is the newer prefix
_DECODER_TENSOR = re.compile(r"^model\.(?:language_model\.)?layers\.\d+\."
                             r"(?:self_attn\.(?P<attn>[qkvo])_proj|mlp\.(?P<mlp>gate|up|down)_proj)\.(?:weight|bias)$")


@dataclass(frozen=True)
class DecoderSplit:
    rank: int
    world_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int

    @classmethod
    def of(cls, text_config, tp: TensorParallel) -> "DecoderSplit":
        t = text_config
        split = cls(tp.rank, tp.world_size, t.num_attention_heads, t.num_key_value_heads, t.head_dim,
                    t.intermediate_size)
        split.check()
        return split

    def check(self) -> None:
        n, kv = self.world_size, self.num_kv_heads
        if self.num_heads % n or (kv % n and n % kv) or self.intermediate_size % n:
            raise ValueError(
                f"tensor parallel size {n} cannot split this decoder (num_attention_heads {self.num_heads}, "
                f"num_key_value_heads {kv}, intermediate_size {self.intermediate_size}): the size must divide "
                f"the attention heads and the intermediate size, and divide or be a multiple of the KV heads")

    @property
    def local_heads(self) -> int:
        return self.num_heads // self.world_size

    @property
    def local_kv_heads(self) -> int:
        return max(self.num_kv_heads // self.world_size, 1)

    @property
    def local_intermediate(self) -> int:
        return self.intermediate_size // self.world_size

    @property
    def first_kv_head(self) -> int:
        """The KV head of this rank's first query head (query head h reads KV head h*KV//H)."""
        return self.rank * self.local_heads * self.num_kv_heads // self.num_heads

    def checkpoint_slice(self, name: str) -> Optional[Tuple[int, int, int]]:
        """(axis, start, stop) of this rank's part of checkpoint tensor `name`; None: it is
        replicated (read whole)."""
        match = _DECODER_TENSOR.match(name)
        if match is None:
            return None
        part = match.group("attn") or match.group("mlp")
        rows = {"q": (self.rank * self.local_heads * self.head_dim, self.local_heads * self.head_dim),
                "k": (self.first_kv_head * self.head_dim, self.local_kv_heads * self.head_dim),
                "gate": (self.rank * self.local_intermediate, self.local_intermediate)}
        rows.update(v=rows["k"], o=rows["q"], up=rows["gate"], down=rows["gate"])
        start, size = rows[part]
        axis = 1 if part in ("o", "down") else 0           # row-parallel: columns of the HF weight
        return axis, start, start + size


def reduce_output(layer) -> None:
    """Make a row-parallel linear return the sum of every rank's output (it holds no bias: a bias
    would be added N times). An int8 one quantizes its slice with the whole rows' scales, so its
    int8 weights are exactly one process's, split."""
    if getattr(layer, "bias", None) is not None:
        raise ValueError("a row-parallel linear must have no bias")
    layer.register_forward_post_hook(lambda _layer, _inputs, out: all_reduce(out))
    if hasattr(layer, "row_absmax"):
        layer.row_absmax = whole_row_absmax


def whole_row_absmax(weight_slice):
    """(out, in/N) float32 slice -> (out, 1): each row's max |w| over every rank's slice."""
    return all_reduce(weight_slice.abs().max(axis=1, keepdim=True), op="max")
