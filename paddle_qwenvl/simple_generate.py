"""Unbatched generation over one contiguous block table: the reference path for tests and the
first Predictor. The engine (paddle_qwenvl.engine) does the same for many sequences at once."""
from typing import List

import paddle

from .engine.inputs import PromptInputs
from .engine.model_runner import kv_cache_dtype
from .ops.attention_metadata import AttentionMetadata
from .models.rope import get_mrope_positions
from .sampling import SamplingParams, SamplingRow, make_generator, sample


def encode_vision(model, inputs: PromptInputs) -> tuple:
    """(image_embeds, video_embeds), each None when the request has none."""
    image = video = None
    if inputs.image_grid_thw:
        image = model.get_image_features(paddle.to_tensor(inputs.pixel_values), inputs.image_grid_thw)
    if inputs.video_grid_thw:
        video = model.get_video_features(paddle.to_tensor(inputs.pixel_values_videos), inputs.video_grid_thw)
    return image, video


def new_kv_caches(model, num_slots: int) -> list:
    """Per layer a (k, v) cache of num_slots slots, in the dtype the engine gives this model."""
    t = model.config.text
    shape, dtype = [num_slots, t.num_key_value_heads, t.head_dim], kv_cache_dtype(model.compute_dtype)
    return [(paddle.zeros(shape, dtype), paddle.zeros(shape, dtype)) for _ in range(t.num_hidden_layers)]


def single_sequence_metadata(start: int, length: int, block_size: int, num_blocks: int) -> AttentionMetadata:
    """Metadata for tokens start..start+length-1 of one sequence whose blocks are 0..num_blocks-1."""
    return AttentionMetadata(query_lens=[length], context_lens=[start + length],
                             slot_mapping=paddle.arange(start, start + length, dtype="int64"),
                             block_tables=paddle.arange(num_blocks, dtype="int32").unsqueeze(0),
                             block_size=block_size)


def prefill_logits(model, inputs, kv_caches, block_size, num_blocks):
    """Run the prompt; returns (logits of every prompt position (L, V), decode delta)."""
    image, video = encode_vision(model, inputs)
    embeds = model.embed_inputs(inputs.input_ids, image, video)
    positions, delta = get_mrope_positions(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                                           inputs.second_per_grid_ts, model.config)
    meta = single_sequence_metadata(0, len(inputs.input_ids), block_size, num_blocks)
    hidden = model(embeds, paddle.to_tensor(positions), meta, kv_caches)
    return model.compute_logits(hidden), delta


@paddle.no_grad()
def generate_ids(model, inputs, params: SamplingParams, eos_token_ids=(), block_size: int = 64) -> List[int]:
    """Token ids generated after the prompt (stopping at EOS or max_new_tokens)."""
    prompt_len = len(inputs.input_ids)
    num_blocks = -(-(prompt_len + params.max_new_tokens) // block_size)
    kv_caches = new_kv_caches(model, num_blocks * block_size)
    logits, delta = prefill_logits(model, inputs, kv_caches, block_size, num_blocks)
    stop = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
    row = SamplingRow(params, inputs.input_ids, [], make_generator(params), tuple(stop))
    last = logits[-1:]
    while True:
        token = sample(last, [row])[0]
        row.output_ids.append(token)
        if len(row.output_ids) >= params.max_new_tokens or token in stop:
            return row.output_ids
        pos = prompt_len + len(row.output_ids) - 1
        meta = single_sequence_metadata(pos, 1, block_size, num_blocks)
        hidden = model(model.embed_tokens(paddle.to_tensor([token])),
                       paddle.full([3, 1], pos + delta, dtype="int64"), meta, kv_caches)
        last = model.compute_logits(hidden)
