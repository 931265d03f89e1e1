"""Runs one scheduled step: packs the requests' new tokens, runs the model over the paged KV
cache, and samples one token per request that reached its newest token (or returns the logits of
every scheduled token).

The vision tower runs for a media item when a step first needs its placeholder tokens (none when
they are all in a cached prefix), and not at all when the encoder cache knows its content. With
chunked prefill (`vision_step_tokens`) it runs ahead instead, a few blocks per step
(`advance_vision`), so that a long video does not stall the other requests' decoding for a whole
tower pass: a step's prompt tokens and tower work together stay within the chunk's work. The
embeddings and prompt M-RoPE positions stay in the request's PromptState, so a recompute after
preemption reuses them.
"""
import hashlib
import time
from typing import List, Optional

import numpy as np
import paddle

from ..layers.linear import linear_macs
from ..processing.rope import get_mrope_positions
from ..ops.attention_metadata import AttentionMetadata
from .encoder_cache import EncoderCache
from .inputs import PromptInputs
from .parallel_steps import follow, send_step
from .request import MediaItem, PromptState, Request
from .sampler import sample, token_logprobs

KV_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def kv_cache_dtype(model_dtype: str) -> str:
    """The KV cache's dtype for a model computing in `model_dtype`: a bfloat16 model keeps its keys
    and values in bf16 (half the bytes to hold and to read per decode step, as HF and vLLM keep them
    in the model's dtype); a float32 model in float32."""
    return "bfloat16" if model_dtype == "bfloat16" else "float32"


def kv_block_bytes(text_config, block_size: int, dtype: str = "float32", num_kv_heads: Optional[int] = None) -> int:
    """Bytes of one block over all layers: key + value, in the cache's dtype; num_kv_heads: the
    heads this process holds (default all: a tensor-parallel rank holds its share)."""
    heads = num_kv_heads or text_config.num_key_value_heads
    per_token = 2 * text_config.num_hidden_layers * heads * text_config.head_dim
    return per_token * block_size * KV_DTYPE_BYTES[dtype]


def media_key(kind: str, grid, pixels: np.ndarray) -> bytes:
    """A hash of what the vision tower sees: the processed pixels and their grid."""
    h = hashlib.blake2b(kind.encode(), digest_size=16)
    h.update(np.asarray(grid, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(pixels, dtype=np.float32).tobytes())
    return h.digest()


class ModelRunner:
    def __init__(self, model, block_size: int, kv_cache_memory: int, max_blocks: Optional[int] = None,
                 encoder_cache_memory: int = 0, vision_step_tokens: Optional[int] = None):
        """KV cache of as many blocks as `kv_cache_memory` bytes hold, at most `max_blocks`; vision
        embeddings of up to `encoder_cache_memory` bytes kept by content. vision_step_tokens: spread
        the vision tower over steps, each step's share as much GEMM work as the decoder spends on
        this many tokens less the step's prompt tokens (None: a media's whole tower in the step that
        first needs it)."""
        self.model = model
        stepwise = vision_step_tokens is not None and hasattr(getattr(model, "visual", None), "advance")
        # an exported tower (static mode) runs whole: one program call per media item
        self.vision_step_tokens = vision_step_tokens if stepwise else None
        self.vision_waited = False                # advance_vision ran no block last time, with media waiting
        self.encoder_cache = EncoderCache(encoder_cache_memory)
        self.config = model.config
        self.block_size = block_size
        self.kv_dtype = kv_cache_dtype(model.compute_dtype)
        self.num_kv_heads = model.num_kv_heads          # this rank's share under tensor parallelism
        block_bytes = kv_block_bytes(self.config.text, block_size, self.kv_dtype, self.num_kv_heads)
        self.num_blocks = kv_cache_memory // block_bytes
        if max_blocks is not None:
            self.num_blocks = min(self.num_blocks, max_blocks)
        if self.num_blocks < 1:
            raise ValueError(f"kv_cache_memory={kv_cache_memory} bytes holds no block of "
                             f"{block_bytes} bytes; raise it")
        self.kv_caches = self._allocate_kv_caches()
        self.last_vision_seconds = 0.0            # vision tower time within the last step

    def _patch_blocks(self, tokens: int) -> int:
        """Vision-tower patch-blocks (patches x blocks) with the linear layers' work of `tokens`
        decoder tokens (attention left out on both sides: it is the smaller part)."""
        layers = self.model.model.layers
        per_token = linear_macs(layers[0]) * len(layers)
        return max(0, tokens) * per_token // linear_macs(self.model.visual.blocks[0])

    def _allocate_kv_caches(self) -> list:
        t = self.config.text
        shape = [self.num_blocks * self.block_size, self.num_kv_heads, t.head_dim]   # slot-major
        return [(paddle.zeros(shape, self.kv_dtype), paddle.zeros(shape, self.kv_dtype))
                for _ in range(t.num_hidden_layers)]

    @paddle.no_grad()
    def run(self, requests: List[Request]) -> List[Optional[int]]:
        """For requests whose `seq.num_scheduled_tokens` are set: a token for each whose step reaches
        its newest token, None for a prefill chunk that does not."""
        query_lens = [r.seq.num_scheduled_tokens for r in requests]
        ends = np.cumsum(query_lens) - 1
        done = [i for i, r in enumerate(requests)
                if r.seq.num_computed_tokens + r.seq.num_scheduled_tokens == r.seq.num_tokens]
        # a step of prefill chunks only still computes one row of logits: the model's step always has rows
        logits = self._step(requests, ends[done] if done else ends[-1:])                   # (B, vocab)
        out: List[Optional[int]] = [None] * len(requests)
        if done:
            rows = [requests[i].sampling_row() for i in done]
            tokens = sample(logits, rows)
            for i, token, logprob in zip(done, tokens, token_logprobs(logits, tokens, rows)):
                out[i] = token
                requests[i].sampled(token, logprob)
        return out

    @paddle.no_grad()
    def logits(self, requests: List[Request]) -> List[paddle.Tensor]:
        """The logits of every scheduled token, per request: (num_scheduled_tokens, vocab) each."""
        query_lens = [r.seq.num_scheduled_tokens for r in requests]
        return paddle.split(self._step(requests, np.arange(sum(query_lens))), query_lens)

    def _step(self, requests: List[Request], logit_rows: np.ndarray) -> paddle.Tensor:
        """The logits (len(logit_rows), vocab) of the given rows of the step's packed tokens."""
        start = time.perf_counter()
        self._encode_media(requests)
        self.last_vision_seconds = time.perf_counter() - start
        ids, positions, meta = self._pack(requests)
        media_rows, media_embeds = self._media(requests)
        ids, positions = paddle.to_tensor(ids), paddle.to_tensor(positions)
        logit_rows = paddle.to_tensor(np.asarray(logit_rows, dtype=np.int64))
        if self.model.tp is None:
            return self.model.step(ids, positions, media_rows, media_embeds, meta, self.kv_caches, logit_rows)
        embeds = self.model.step_embeds(ids, media_rows, media_embeds)
        send_step(embeds, positions, meta)                # the other ranks run this step too
        return self.model.step_logits(embeds, positions, meta, self.kv_caches, logit_rows)

    def follow(self) -> None:
        """A tensor-parallel rank other than 0: run rank 0's steps until it stops."""
        follow(self.model, self.kv_caches, self.block_size)

    def prepare_prompt(self, inputs: PromptInputs) -> PromptState:
        """On arrival: the prompt's M-RoPE positions and its media items (where their embeddings go).
        Raises ValueError when placeholders and grids disagree, before anything runs."""
        positions, delta = get_mrope_positions(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                                               inputs.second_per_grid_ts, self.config)
        state = PromptState(positions, delta)
        ids, cfg = np.asarray(inputs.input_ids), self.config
        for kind, token_id, pixels, grids in (("image", cfg.image_token_id, inputs.pixel_values, inputs.image_grid_thw),
                                              ("video", cfg.video_token_id, inputs.pixel_values_videos,
                                               inputs.video_grid_thw)):
            if grids:
                state.media += self._media_items(kind, ids, token_id, np.asarray(pixels, dtype=np.float32), grids)
        return state

    def _media_items(self, kind: str, ids: np.ndarray, token_id: int, pixels: np.ndarray, grids) -> List[MediaItem]:
        """Items in prompt order (the i-th run of placeholders is the i-th grid's): one per image,
        one per temporal patch of a video. The towers attend within a frame, so a video's temporal
        patches encode alone to the same embeddings: a long video is encoded as the prefill
        chunks reach it, and a repeated clip's patches are found in the encoder cache one by one."""
        rows = np.flatnonzero(ids == token_id)
        merge = self.config.vision.spatial_merge_size ** 2
        if len(rows) != sum(t * h * w for t, h, w in grids) // merge:
            raise ValueError(f"the prompt has {len(rows)} {kind} pad tokens but {kind}_grid_thw "
                             f"{list(grids)} gives {sum(t * h * w for t, h, w in grids) // merge} {kind} "
                             f"embeddings: expand each pad to t*h*w/merge^2 tokens (the processor does this)")
        parts = [(i, (t, h, w)) for i, (t, h, w) in enumerate(grids)] if kind == "image" else \
            [(i, (1, h, w)) for i, (t, h, w) in enumerate(grids) for _ in range(t)]
        items, row, patch = [], 0, 0
        for source, grid in parts:
            count = grid[0] * grid[1] * grid[2]
            patches = pixels[patch:patch + count]
            items.append(MediaItem(kind, patches, grid, rows[row:row + count // merge],
                                   media_key(kind, grid, patches), source))
            row, patch = row + count // merge, patch + count
        return items

    @staticmethod
    def _needed(request: Request) -> List[MediaItem]:
        """The media whose placeholder tokens this step computes."""
        start = request.seq.num_computed_tokens
        end = start + request.seq.num_scheduled_tokens
        return [m for m in request.prompt.media if m.rows[0] < end and m.rows[-1] >= start]

    def _encode_media(self, requests: List[Request]) -> None:
        """Embeddings for the media this step needs: from the encoder cache, else the vision tower,
        one call per kind for what all the requests miss (a content needed twice runs once). The
        call's time goes to the requests that waited for it, split by their share of its patches."""
        missing = {}                                  # media key -> the items waiting for it
        for request in requests:
            for item in self._needed(request):
                if item.embeds is None:
                    item.embeds = self.encoder_cache.get(item.key)
                if item.embeds is None:
                    missing.setdefault(item.key, []).append((request, item))
        for kind in ("image", "video"):
            waiting = [pairs for pairs in missing.values() if pairs[0][1].kind == kind]
            if not waiting:
                continue
            start = time.perf_counter()
            self._run_vision_tower(kind, [pairs[0][1] for pairs in waiting])
            seconds = time.perf_counter() - start
            share = seconds / sum(len(item.rows) for pairs in waiting for _, item in pairs)
            for pairs in waiting:
                for request, item in pairs:
                    item.embeds, item.pixels = pairs[0][1].embeds, None
                    request.timings.vision += share * len(item.rows)

    def _run_vision_tower(self, kind: str, items: List[MediaItem]) -> None:
        pixels = paddle.to_tensor(np.concatenate([m.pixels for m in items]))
        fn = self.model.get_image_features if kind == "image" else self.model.get_video_features
        embeds = fn(pixels, [m.grid for m in items])                  # rows of all items, in order
        for item, part in zip(items, paddle.split(embeds, [len(m.rows) for m in items])):
            self._store(item, part)

    def _store(self, item: MediaItem, embeds: paddle.Tensor) -> None:
        item.embeds, item.pixels, item.vision_run = embeds, None, None
        self.encoder_cache.put(item.key, embeds, int(np.prod(embeds.shape)) * embeds.element_size())

    def media_in_progress(self, request: Request) -> list:
        """(first, end) of each placeholder run whose embeddings are still to come when the tower
        runs ahead (empty otherwise); known contents come from the encoder cache here."""
        if self.vision_step_tokens is None:
            return []
        for item in request.prompt.media:
            if item.embeds is None:
                item.embeds = self.encoder_cache.get(item.key)
        return [m.span for m in request.prompt.media if m.embeds is None]

    @paddle.no_grad()
    def advance_vision(self, requests: List[Request], prompt_tokens: int = 0) -> bool:
        """Vision tower work on the media the requests' prefills will reach, request by request in
        prompt order: the patch-blocks of `vision_step_tokens` less the `prompt_tokens` the step
        just computed. At least one block when the step computed no prompt tokens or the tower
        waited last time, so a frame larger than the budget still moves and other prompts cannot
        starve it. Returns whether any ran."""
        if self.vision_step_tokens is None:
            return False
        budget, tower, worked = self._patch_blocks(self.vision_step_tokens - prompt_tokens), self.model.visual, False
        must_move, waiting = prompt_tokens == 0 or self.vision_waited, False
        for r in requests:
            start = time.perf_counter()
            for item in r.prompt.media:
                if item.embeds is not None or item.span[1] <= r.seq.num_computed_tokens:
                    continue
                patches, waiting = item.pixels.shape[0], True
                blocks = budget // patches or (1 if must_move and not worked else 0)
                if blocks == 0:
                    break
                run = item.vision_run or tower.start(paddle.to_tensor(item.pixels), [item.grid])
                item.vision_run, first, worked = run, run.next_block, True
                if tower.advance(run, blocks):
                    self._store(item, tower.finish(run))
                budget -= (run.next_block - first) * patches
            r.timings.vision += time.perf_counter() - start
            r.seq.media_in_progress = [m.span for m in r.prompt.media if m.embeds is None]
            if budget <= 0:
                break
        self.vision_waited = waiting and not worked
        return worked

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

    def _media(self, requests: List[Request]):
        """(rows (M,) int64 of the packed tokens that take vision embeddings, those embeddings
        (M, hidden)), or (None, None) when the step has none."""
        rows, feats, offset = [], [], 0
        for r in requests:
            start, n = r.seq.num_computed_tokens, r.seq.num_scheduled_tokens
            for item in self._needed(r):
                inside = np.flatnonzero((item.rows >= start) & (item.rows < start + n))
                rows.append(item.rows[inside] - start + offset)
                feats.append(item.embeds if len(inside) == len(item.rows) else
                             paddle.gather(item.embeds, paddle.to_tensor(inside)))
            offset += n
        if not rows:
            return None, None
        return paddle.to_tensor(np.concatenate(rows).astype(np.int64)), paddle.concat(feats, axis=0)
