"""The two programs an export traces: the decoder step and the vision tower, as paddle.nn.Layers
whose forward takes only tensors, with the InputSpecs that name them.

The decoder step serves prefill and decode alike (the paged kernel takes both) over the paged KV
cache: input_ids (T,), positions (3, T), the rows and embeddings of vision tokens (M may be 0),
the attention layout (slot_mapping, block_tables, token_seq, token_ctx; see
ops/attention_metadata.py) and the rows whose logits are wanted; one (k, v) cache pair per layer,
written in place. block_size is fixed at export (an attribute of the attention op).
"""
import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from ..ops._build import build_info
from ..ops.attention_metadata import AttentionMetadata

DECODER_STEP, VISION_TOWER = "decoder_step", "vision_tower"      # the programs' file names (.json, .pdiparams)


def kv_cache_names(num_layers: int) -> list:
    return [f"{kind}_cache_{i}" for i in range(num_layers) for kind in ("k", "v")]


class DecoderStep(nn.Layer):
    def __init__(self, model, block_size: int):
        super().__init__()
        self.model, self.block_size = model, block_size

    def forward(self, input_ids, positions, media_rows, media_embeds, slot_mapping, block_tables, token_seq,
                token_ctx, logit_rows, kv_caches):
        meta = AttentionMetadata(None, None, slot_mapping, block_tables, self.block_size,
                                 token_seq=token_seq, token_ctx=token_ctx)
        pairs = [(kv_caches[i], kv_caches[i + 1]) for i in range(0, len(kv_caches), 2)]
        return self.model.step(input_ids, positions, media_rows, media_embeds, meta, pairs, logit_rows)


def decoder_step_spec(config, kv_dtype: str) -> list:
    t = config.text
    cache = [None, t.num_key_value_heads, t.head_dim]
    return [InputSpec([None], "int64", "input_ids"), InputSpec([3, None], "int64", "positions"),
            InputSpec([None], "int64", "media_rows"),
            InputSpec([None, t.hidden_size], "float32", "media_embeds"),
            InputSpec([None], "int64", "slot_mapping"), InputSpec([None, None], "int32", "block_tables"),
            InputSpec([None], "int32", "token_seq"), InputSpec([None], "int32", "token_ctx"),
            InputSpec([None], "int64", "logit_rows"),
            [InputSpec(cache, kv_dtype, name) for name in kv_cache_names(t.num_hidden_layers)]]


class VisionTower(nn.Layer):
    """model.visual.encode on the pixels and the tensors its grid_inputs() gives, in that order."""

    def __init__(self, model):
        super().__init__()
        self.visual = model.visual

    def forward(self, pixel_values, grid_inputs):
        return self.visual.encode(pixel_values, *grid_inputs)


def vision_spec(visual, config) -> list:
    """pixel_values, then visual.grid_inputs()'s arrays in their order, with their dtypes."""
    specs = []
    for name, value in visual.grid_inputs([(1, 2 * config.vision.spatial_merge_size,
                                            2 * config.vision.spatial_merge_size)]).items():
        shape = [None] * value.ndim
        if name == "rotary":
            shape[1] = value.shape[1]
        specs.append(InputSpec(shape, "float32" if value.dtype.kind == "f" else "int64", name))
    return [InputSpec([None, config.vision.patch_dim], "float32", "pixel_values"), specs]


def trace(layer: nn.Layer, spec: list):
    build_info()          # asks the library in dygraph (it is cached): the traced wrappers read it
    return paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
