"""Runs one scheduled step: packs the requests' new tokens, runs the model over the paged KV
cache, and samples one token per request (or returns the logits of every scheduled token).

The vision tower runs once per request, at its first prefill; the merged vision embeddings and
prompt M-RoPE positions stay in the request's PromptState, so a recompute after preemption reuses them.
"""
import time
from typing import List, Optional

import numpy as np
import paddle

from ..models.rope import get_mrope_positions
from ..ops.attention_metadata import AttentionMetadata
from .inputs import PromptInputs
from .request import PromptState, Request
from .sampler import sample

KV_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


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
        self.last_vision_seconds = 0.0            # vision tower time within the last step

    def _allocate_kv_caches(self) -> list:
        t = self.config.text
        shape = [self.num_blocks * self.block_size, t.num_key_value_heads, t.head_dim]   # slot-major
        return [(paddle.zeros(shape, self.kv_dtype), paddle.zeros(shape, self.kv_dtype))
                for _ in range(t.num_hidden_layers)]

    @paddle.no_grad()
    def run(self, requests: List[Request]) -> List[int]:
        """One token per request, for requests whose `seq.num_scheduled_tokens` are set."""
        hidden, meta = self._forward(requests)
        last = paddle.to_tensor(np.cumsum(meta.query_lens) - 1)
        logits = self.model.compute_logits(paddle.gather(hidden, last))        # (B, vocab)
        return sample(logits, [r.sampling_row() for r in requests])

    @paddle.no_grad()
    def logits(self, requests: List[Request]) -> List[paddle.Tensor]:
        """The logits of every scheduled token, per request: (num_scheduled_tokens, vocab) each."""
        hidden, meta = self._forward(requests)
        return paddle.split(self.model.compute_logits(hidden), meta.query_lens)

    def _forward(self, requests: List[Request]):
        """(final hidden states (T, hidden) of the step's packed tokens, its attention metadata)."""
        start = time.perf_counter()
        for r in requests:
            if r.prompt.media:
                self._encode_media(r)
        self.last_vision_seconds = time.perf_counter() - start
        ids, positions, meta = self._pack(requests)
        embeds = self._embed(requests, ids)
        return self.model(embeds, paddle.to_tensor(positions), meta, self.kv_caches), meta

    def prepare_prompt(self, inputs: PromptInputs) -> PromptState:
        """On arrival: the prompt's M-RoPE positions and where its vision embeddings go.
        Raises ValueError when placeholders and grids disagree, before anything runs."""
        positions, delta = get_mrope_positions(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                                               inputs.second_per_grid_ts, self.config)
        state = PromptState(positions, delta)
        ids = np.asarray(inputs.input_ids)
        cfg = self.config
        for token_id, pixels, grids, name in ((cfg.image_token_id, inputs.pixel_values, inputs.image_grid_thw, "image"),
                                              (cfg.video_token_id, inputs.pixel_values_videos,
                                               inputs.video_grid_thw, "video")):
            if grids:
                state.media.append((name, pixels, grids))
                rows = self._pad_rows(ids, token_id, grids, name)
                state.vision_rows = rows if state.vision_rows is None else np.concatenate([state.vision_rows, rows])
        return state

    def _pad_rows(self, ids: np.ndarray, token_id: int, grids, name: str) -> np.ndarray:
        rows = np.flatnonzero(ids == token_id)
        expected = sum(t * h * w for t, h, w in grids) // self.config.vision.spatial_merge_size ** 2
        if len(rows) != expected:
            raise ValueError(f"the prompt has {len(rows)} {name} pad tokens but {name}_grid_thw "
                             f"{list(grids)} gives {expected} {name} embeddings: expand each pad to "
                             f"t*h*w/merge^2 tokens (the processor does this)")
        return rows

    def _encode_media(self, request: Request) -> None:
        """Once per request, at its first prefill; kept in its PromptState for recomputes."""
        start, state = time.perf_counter(), request.prompt
        embeds = [self._vision_features(name, pixels, grids) for name, pixels, grids in state.media]
        state.vision_embeds = paddle.concat(embeds, axis=0)   # rows in vision_rows order
        state.media = []                                      # pixels are no longer needed
        request.timings.vision += time.perf_counter() - start

    def _vision_features(self, name, pixels, grids) -> paddle.Tensor:
        pixels = paddle.to_tensor(np.asarray(pixels, dtype=np.float32))
        fn = self.model.get_image_features if name == "image" else self.model.get_video_features
        return fn(pixels, grids)

    def _pack(self, requests: List[Request]):
        """Packed token ids (T,), positions (3, T) and the attention metadata of the step."""
        ids, positions, slots, query_lens, context_lens = [], [], [], [], []
        for r in requests:
            seq = r.seq
            start, n = seq.num_computed_tokens, seq.num_scheduled_tokens
            ids.extend(seq.token_ids[start:start + n])
            positions.append(self._positions(r, start, start + n))
            slots.append(self._slots(seq.block_table, start, start + n))
            query_lens.append(n)
            context_lens.append(start + n)
        meta = AttentionMetadata(
            query_lens=query_lens, context_lens=context_lens,
            slot_mapping=paddle.to_tensor(np.concatenate(slots)),
            block_tables=paddle.to_tensor(self._block_tables([r.seq.block_table for r in requests])),
            block_size=self.block_size,
            cu_query_lens=paddle.to_tensor(np.concatenate([[0], np.cumsum(query_lens)]).astype(np.int32)))
        return np.array(ids, dtype=np.int64), np.concatenate(positions, axis=1), meta

    @staticmethod
    def _positions(request: Request, start: int, end: int) -> np.ndarray:
        """(3, end - start): prompt positions from the PromptState, then p + delta for later tokens."""
        state = request.prompt
        prompt = state.positions[:, start:end]
        after = np.arange(max(start, request.seq.num_prompt_tokens), end, dtype=np.int64) + state.mrope_delta
        return np.concatenate([prompt, np.broadcast_to(after, (3, len(after)))], axis=1)

    def _slots(self, block_table: List[int], start: int, end: int) -> np.ndarray:
        pos = np.arange(start, end)
        table = np.asarray(block_table, dtype=np.int64)
        return table[pos // self.block_size] * self.block_size + pos % self.block_size

    @staticmethod
    def _block_tables(block_tables: List[List[int]]) -> np.ndarray:
        width = max(len(t) for t in block_tables)
        tables = np.full((len(block_tables), width), -1, dtype=np.int32)
        for i, t in enumerate(block_tables):
            tables[i, :len(t)] = t
        return tables

    def _embed(self, requests: List[Request], ids: np.ndarray) -> paddle.Tensor:
        """(T, hidden) token embeddings with vision embeddings put in place of pad tokens."""
        embeds = self.model.embed_tokens(paddle.to_tensor(ids))
        rows, feats, offset = [], [], 0
        for r in requests:
            state = r.prompt
            if r.seq.num_computed_tokens == 0 and state.vision_embeds is not None:
                rows.append(state.vision_rows + offset)
                feats.append(state.vision_embeds)
            offset += r.seq.num_scheduled_tokens
        if rows:
            index = paddle.to_tensor(np.concatenate(rows))
            embeds = paddle.scatter(embeds, index, paddle.concat(feats, axis=0), overwrite=True)
        return embeds
