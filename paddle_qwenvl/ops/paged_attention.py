"""Attention over the paged KV cache: writes the step's new K/V into their slots, then attends.

Layout contract: see `paddle_qwenvl.ops.attention_metadata`. Which path runs is decided in
paged_attention_path (the reference, or the compiled kernel with the sequences it sends to the
GEMM engine); the compiled op (external_ops/attention/paged_attention_op.cc) does what it is told.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from .attention_metadata import AttentionMetadata
from ._build import build_info, compiled_ops, exec_attrs

COMPUTE_DTYPES = ("float32", "bfloat16")
# Shortest fresh prompt (nothing cached before it) that a bf16 model's attention runs on oneDNN's
# bf16 GEMMs (external_ops/attention/gemm_attention.cc) instead of the paged kernel's fp32 tiles:
# where the GEMMs win (scripts/bench_ops.py, prefill section).
GEMM_MIN_PROMPT = 128
CACHE_DTYPES = (paddle.float32, paddle.bfloat16)


def _check(q, k, v, k_cache, v_cache, meta: AttentionMetadata):
    qs, ks, cs = q.shape, k.shape, k_cache.shape     # each .shape is a call into Paddle: read once
    if len(qs) != 3 or len(ks) != 3 or v.shape != ks:
        raise ValueError(f"q must be (T, Hq, D) and k, v (T, Hkv, D); got {qs}, {ks}, {v.shape}")
    if qs[0] != ks[0] or qs[0] != sum(meta.query_lens):
        raise ValueError(f"{qs[0]} tokens given but query_lens sum to {sum(meta.query_lens)}")
    if qs[1] % ks[1]:
        raise ValueError(f"query heads {qs[1]} must be a multiple of kv heads {ks[1]}")
    if cs[1:] != ks[1:] or v_cache.shape != cs:
        raise ValueError(f"cache {cs} does not hold (slots, {ks[1]}, {ks[2]})")
    if k_cache.dtype not in CACHE_DTYPES or v_cache.dtype != k_cache.dtype:
        raise ValueError(f"the caches must be both float32 or both bfloat16; got {k_cache.dtype}, {v_cache.dtype}")


def context_slots(meta: AttentionMetadata) -> list:
    """Per sequence, the cache slots of positions 0..context_len-1, as int64 numpy arrays."""
    tables = meta.block_tables.numpy()
    bs = meta.block_size
    out = []
    for i, n in enumerate(meta.context_lens):
        pos = np.arange(n)
        out.append(tables[i, pos // bs].astype(np.int64) * bs + pos % bs)
    return out


def write_kv(k, v, k_cache, v_cache, slot_mapping):
    """Scatter new keys/values (T, Hkv, D) into their cache slots in place (a bf16 cache takes them
    rounded to bf16)."""
    for rows, cache in ((k, k_cache), (v, v_cache)):
        if cache.dtype == paddle.bfloat16:     # Paddle's CPU scatter has no bf16 kernel: move the bits as int32 pairs
            cache.view(paddle.int32).scatter_(slot_mapping, rows.astype("bfloat16").view(paddle.int32), overwrite=True)
        else:
            cache.scatter_(slot_mapping, rows, overwrite=True)


def paged_attention_ref(q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float):
    """Plain-Paddle reference. q (T, Hq, D), k/v (T, Hkv, D) -> out (T, Hq, D).

    Causal within each sequence: query j of a sequence with context n and q_len m sits at
    position n - m + j and sees cache positions 0..n - m + j.
    """
    _check(q, k, v, k_cache, v_cache, meta)
    write_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    outs, start = [], 0
    for slots, m, n in zip(context_slots(meta), meta.query_lens, meta.context_lens):
        idx = paddle.to_tensor(slots)
        qi = q[start:start + m].transpose([1, 0, 2]).unsqueeze(0)            # (1, Hq, m, D)
        ki = paddle.gather(k_cache, idx).astype("float32").transpose([1, 0, 2]).unsqueeze(0)   # (1, Hkv, n, D)
        vi = paddle.gather(v_cache, idx).astype("float32").transpose([1, 0, 2]).unsqueeze(0)
        outs.append(_sdpa(qi, ki, vi, m, n, scale)[0].transpose([1, 0, 2]))
        start += m
    return paddle.concat(outs, axis=0)


def _sdpa(q, k, v, m, n, scale):
    """(1, Hq, m, D) x (1, Hkv, n, D): GQA by repeating kv heads; causal with offset n - m."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k = paddle.repeat_interleave(k, rep, axis=1)
        v = paddle.repeat_interleave(v, rep, axis=1)
    scores = paddle.matmul(q, k, transpose_y=True) * scale                 # (1, Hq, m, n)
    if m > 1:
        allowed = paddle.arange(n).unsqueeze(0) <= (paddle.arange(m) + (n - m)).unsqueeze(1)
        scores = paddle.where(allowed, scores, paddle.full_like(scores, float("-inf")))
    return paddle.matmul(F.softmax(scores, axis=-1), v)


def token_layout(meta: AttentionMetadata):
    """Per packed query token: its sequence index and how many cache positions it sees, int32 (T,).

    Query j of a sequence with context n and q_len m sees positions 0..n-m+j, i.e. n-m+j+1 of them.
    """
    seq, ctx = [], []
    for i, (m, n) in enumerate(zip(meta.query_lens, meta.context_lens)):
        seq.append(np.full(m, i, dtype=np.int32))
        ctx.append(np.arange(n - m + 1, n + 1, dtype=np.int32))
    return paddle.to_tensor(np.concatenate(seq)), paddle.to_tensor(np.concatenate(ctx))


def _kernel_inputs(meta: AttentionMetadata):
    """(slot_mapping int64, block_tables int32, token_seq, token_ctx), built once per step: the
    same metadata object is passed to every layer, so it is cached on it."""
    key = (id(meta.slot_mapping), id(meta.block_tables), tuple(meta.query_lens), tuple(meta.context_lens))
    cached = getattr(meta, "_kernel_inputs", None)
    if cached is None or cached[0] != key:
        slots = meta.slot_mapping if meta.slot_mapping.dtype == paddle.int64 else meta.slot_mapping.astype("int64")
        tables = meta.block_tables if meta.block_tables.dtype == paddle.int32 else meta.block_tables.astype("int32")
        cached = (key, (slots, tables) + token_layout(meta))
        meta._kernel_inputs = cached
    return cached[1]


def gemm_sequences(meta: AttentionMetadata, compute_dtype: str) -> list:
    """The sequences (indices into meta) whose attention runs on oneDNN's bf16 GEMMs: with
    compute_dtype "bfloat16", a library with oneDNN and a CPU with native bf16, the fresh prompts
    (query_len == context_len) of at least GEMM_MIN_PROMPT tokens; none otherwise."""
    if compute_dtype != "bfloat16" or not (build_info()["bf16"] and build_info()["onednn"]):
        return []
    return [i for i, (m, n) in enumerate(zip(meta.query_lens, meta.context_lens)) if m == n >= GEMM_MIN_PROMPT]


def paged_attention_path(q, meta: AttentionMetadata, compute_dtype: str) -> tuple:
    """Which path runs, the one place that decides: ("reference", []) for the pure-Paddle reference
    (no compiled ops, q not float32, or no query tokens), else ("kernel", gemm_sequences(...)):
    the compiled op, its paged kernel in fp32 for every sequence but those it sends to the GEMMs."""
    if compiled_ops() is None or q.dtype != paddle.float32 or not sum(meta.query_lens):
        return "reference", []
    return "kernel", gemm_sequences(meta, compute_dtype)


def paged_attention(q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float,
                    compute_dtype: str = "float32"):
    """Entry point used by the attention layer: the compiled kernel (external_ops/attention/
    paged_attention_op.cc) or paged_attention_ref, as paged_attention_path decides. Same contract:
    writes k/v into their slots in place, returns out (T, Hq, D). The caches are float32, or
    bfloat16 (a bf16 model's: half the bytes; k/v stored rounded to bf16, read back widened).

    compute_dtype "bfloat16" (a bf16 model's): fresh prompts of GEMM_MIN_PROMPT tokens or more
    attend on oneDNN bf16 GEMMs where the CPU has native bf16 (products summed in fp32, softmax in
    fp32, its numerators rounded to bf16); everything else stays fp32.

    Under paddle.jit.to_static (meta with token_seq / token_ctx tensors, no host lists) the paged
    kernel runs every sequence, prefill and decode alike, in fp32."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}; got {compute_dtype!r}")
    if not paddle.in_dynamic_mode():
        return _paged_attention_traced(q, k, v, k_cache, v_cache, meta, scale)
    path, gemm = paged_attention_path(q, meta, compute_dtype)
    if path == "reference":
        return paged_attention_ref(q, k, v, k_cache, v_cache, meta, scale)
    _check(q, k, v, k_cache, v_cache, meta)
    slots, tables, token_seq, token_ctx = _kernel_inputs(meta)
    out, _, _ = compiled_ops().pqv_paged_attention(q, k, v, k_cache, v_cache, slots, tables, token_seq, token_ctx,
                                                   float(scale), int(meta.block_size), gemm, *exec_attrs())
    return out


def _paged_attention_traced(q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float):
    if compiled_ops() is None:
        raise RuntimeError("exporting the decoder step needs the compiled ops (PADDLE_QWENVL_DISABLE_OPS is set)")
    out, _, _ = compiled_ops().pqv_paged_attention(q, k, v, k_cache, v_cache, meta.slot_mapping, meta.block_tables,
                                                   meta.token_seq, meta.token_ctx, float(scale),
                                                   int(meta.block_size), [], *exec_attrs())
    return out
