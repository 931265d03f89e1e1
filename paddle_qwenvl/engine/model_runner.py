"""Runs one scheduled step: packs the sequences' new tokens, runs the model over the paged KV
cache, samples one token per sequence.

The vision tower runs once per request, at its first prefill; the merged vision embeddings and
prompt M-RoPE positions stay on the sequence, so a recompute after preemption reuses them.
"""
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import paddle

from ..ops.attention_metadata import AttentionMetadata
from ..models.rope import get_mrope_positions
from ..sampling import SamplingRow, sample
from .sequence import Sequence

KV_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


@dataclass
class MultiModalCache:
    """Per sequence: positions and rows on arrival, embeddings at its first prefill."""
    prompt_positions: np.ndarray                  # (3, num_prompt_tokens) int64
    vision_rows: Optional[np.ndarray] = None      # (n,) prompt indices of image/video pad tokens
    vision_embeds: Optional[paddle.Tensor] = None  # (n, hidden) in the order of vision_rows


def kv_cache_dtype(model_dtype: str) -> str:
    """The KV cache's dtype for a model computing in `model_dtype`: a bfloat16 model keeps its keys
    and values in bf16 (half the bytes to hold and to read per decode step, as HF and vLLM keep them
    in the model's dtype); a float32 model in float32."""
    return "bfloat16" if model_dtype == "bfloat16" else "float32"


def kv_block_bytes(text_config, block_size: int, dtype: str = "float32") -> int:
    """Bytes of one block over all layers: key + value, in the cache's dtype."""
    per_token = 2 * text_config.num_hidden_layers * text_config.num_key_value_heads * text_config.head_dim
    return per_token * block_size * KV_DTYPE_BYTES[dtype]


class ModelRunner:
    def __init__(self, model, block_size: int, kv_cache_memory: int, max_blocks: Optional[int] = None):
        """KV cache of as many blocks as `kv_cache_memory` bytes hold, at most `max_blocks`."""
        self.model = model
        self.config = model.config
        self.block_size = block_size
        self.kv_dtype = kv_cache_dtype(model.compute_dtype)
        self.num_blocks = kv_cache_memory // kv_block_bytes(self.config.text, block_size, self.kv_dtype)
        if max_blocks is not None:
            self.num_blocks = min(self.num_blocks, max_blocks)
        if self.num_blocks < 1:
            raise ValueError(f"kv_cache_memory={kv_cache_memory} bytes holds no block of "
                             f"{kv_block_bytes(self.config.text, block_size, self.kv_dtype)} bytes; raise it")
        self.kv_caches = self._allocate_kv_caches()
        self.last_vision_seconds = 0.0            # vision tower time within the last run()

    def _allocate_kv_caches(self) -> list:
        t = self.config.text
        shape = [self.num_blocks * self.block_size, t.num_key_value_heads, t.head_dim]   # slot-major
        return [(paddle.zeros(shape, self.kv_dtype), paddle.zeros(shape, self.kv_dtype))
                for _ in range(t.num_hidden_layers)]

    @paddle.no_grad()
    def run(self, seqs: List[Sequence], eos_ids: List[int]) -> List[int]:
        """One token per sequence, for sequences whose `num_scheduled_tokens` are set."""
        start = time.perf_counter()
        for seq in seqs:
            if seq.mm_inputs is not None:
                self._encode_media(seq)
        self.last_vision_seconds = time.perf_counter() - start
        ids, positions, meta = self._pack(seqs)
        hidden = self.model(self._embed(seqs, ids), paddle.to_tensor(positions), meta, self.kv_caches)
        last = paddle.to_tensor(np.cumsum(meta.query_lens) - 1)
        logits = self.model.compute_logits(paddle.gather(hidden, last))        # (B, vocab)
        return sample(logits, [self._sampling_row(s, eos_ids) for s in seqs])

    def prepare_prompt(self, seq: Sequence) -> None:
        """On arrival: the prompt's M-RoPE positions and where its vision embeddings go.
        Raises ValueError when placeholders and grids disagree, before anything runs."""
        inputs = seq.mm_inputs
        positions, seq.mrope_delta = get_mrope_positions(
            seq.prompt_token_ids, inputs.image_grid_thw, inputs.video_grid_thw,
            inputs.second_per_grid_ts, self.config)
        seq.mm_cache = MultiModalCache(positions)
        rows = [self._pad_rows(seq, token_id, grids, name) for token_id, grids, name in self._media(inputs)]
        if rows:
            seq.mm_cache.vision_rows = np.concatenate(rows)
        else:
            seq.mm_inputs = None                  # text only: nothing to encode

    def _media(self, inputs):
        """(pad token id, grids, name) of the kinds of media the request has."""
        cfg = self.config
        kinds = ((cfg.image_token_id, inputs.image_grid_thw, "image"),
                 (cfg.video_token_id, inputs.video_grid_thw, "video"))
        return [k for k in kinds if k[1]]

    def _pad_rows(self, seq: Sequence, token_id: int, grids, name: str) -> np.ndarray:
        rows = np.flatnonzero(np.asarray(seq.prompt_token_ids) == token_id)
        expected = sum(t * h * w for t, h, w in grids) // self.config.vision.spatial_merge_size ** 2
        if len(rows) != expected:
            raise ValueError(f"the prompt has {len(rows)} {name} pad tokens but {name}_grid_thw "
                             f"{list(grids)} gives {expected} {name} embeddings: expand each pad to "
                             f"t*h*w/merge^2 tokens (the processor does this)")
        return rows

    def _encode_media(self, seq: Sequence) -> None:
        """Once per request, at its first prefill; kept on the sequence for recomputes."""
        start, inputs = time.perf_counter(), seq.mm_inputs
        pixels = {"image": inputs.pixel_values, "video": inputs.pixel_values_videos}
        embeds = [self._vision_features(name, pixels[name], grids) for _, grids, name in self._media(inputs)]
        seq.mm_cache.vision_embeds = paddle.concat(embeds, axis=0)   # rows in vision_rows order
        seq.mm_inputs = None                      # pixels are no longer needed
        seq.timings.vision += time.perf_counter() - start

    def _vision_features(self, name, pixels, grids) -> paddle.Tensor:
        pixels = paddle.to_tensor(np.asarray(pixels, dtype=np.float32))
        fn = self.model.get_image_features if name == "image" else self.model.get_video_features
        return fn(pixels, grids)

    def _pack(self, seqs: List[Sequence]):
        """Packed token ids (T,), positions (3, T) and the attention metadata of the step."""
        ids, positions, slots, query_lens, context_lens = [], [], [], [], []
        for seq in seqs:
            start, n = seq.num_computed_tokens, seq.num_scheduled_tokens
            ids.extend(seq.token_ids[start:start + n])
            positions.append(self._positions(seq, start, start + n))
            slots.append(self._slots(seq, start, start + n))
            query_lens.append(n)
            context_lens.append(start + n)
        meta = AttentionMetadata(
            query_lens=query_lens, context_lens=context_lens,
            slot_mapping=paddle.to_tensor(np.concatenate(slots)),
            block_tables=paddle.to_tensor(self._block_tables(seqs)), block_size=self.block_size,
            cu_query_lens=paddle.to_tensor(np.concatenate([[0], np.cumsum(query_lens)]).astype(np.int32)))
        return np.array(ids, dtype=np.int64), np.concatenate(positions, axis=1), meta

    def _positions(self, seq: Sequence, start: int, end: int) -> np.ndarray:
        """(3, end - start): prompt positions from the cache, then p + delta for later tokens."""
        prompt = seq.mm_cache.prompt_positions[:, start:end]
        after = np.arange(max(start, seq.num_prompt_tokens), end, dtype=np.int64) + seq.mrope_delta
        return np.concatenate([prompt, np.broadcast_to(after, (3, len(after)))], axis=1)

    def _slots(self, seq: Sequence, start: int, end: int) -> np.ndarray:
        pos = np.arange(start, end)
        table = np.asarray(seq.block_table, dtype=np.int64)
        return table[pos // self.block_size] * self.block_size + pos % self.block_size

    @staticmethod
    def _block_tables(seqs: List[Sequence]) -> np.ndarray:
        width = max(len(s.block_table) for s in seqs)
        tables = np.full((len(seqs), width), -1, dtype=np.int32)
        for i, s in enumerate(seqs):
            tables[i, :len(s.block_table)] = s.block_table
        return tables

    def _embed(self, seqs: List[Sequence], ids: np.ndarray) -> paddle.Tensor:
        """(T, hidden) token embeddings with vision embeddings put in place of pad tokens."""
        embeds = self.model.embed_tokens(paddle.to_tensor(ids))
        rows, feats, offset = [], [], 0
        for seq in seqs:
            cache = seq.mm_cache
            if seq.num_computed_tokens == 0 and cache.vision_embeds is not None:
                rows.append(cache.vision_rows + offset)
                feats.append(cache.vision_embeds)
            offset += seq.num_scheduled_tokens
        if rows:
            index = paddle.to_tensor(np.concatenate(rows))
            embeds = paddle.scatter(embeds, index, paddle.concat(feats, axis=0), overwrite=True)
        return embeds

    @staticmethod
    def _sampling_row(seq: Sequence, eos_ids: List[int]) -> SamplingRow:
        params = seq.sampling_params
        stop_ids = list(params.stop_token_ids) + ([] if params.ignore_eos else list(eos_ids))
        return SamplingRow(params, seq.prompt_token_ids, seq.completion_token_ids, seq.generator, stop_ids)
