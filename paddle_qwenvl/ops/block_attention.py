"""Non-causal attention restricted to blocks along the token axis (the vision towers: one block
per frame, or per window in Qwen2.5-VL's windowed layers).

block_attention_path decides which path runs, by the mean block length (thresholds below):
- long blocks (frames): external_ops/attention/block_attention_op.cc, two oneDNN GEMMs per (block,
  head, chunk of query rows) with K and V packed once; in bf16 (compute_dtype="bfloat16", on a CPU
  with native bf16) or fp32 ("gemm_bf16" / "gemm"). In bf16 on a CPU with AMX and head dim <= 80
  (Qwen's vision heads: 80) the same op runs a fused kernel on AMX tiles instead ("amx",
  external_ops/attention/block_amx.cc), ~2x the GEMMs' speed, and from short windows on;
  PADDLE_QWENVL_AMX_ATTENTION=0 keeps the GEMMs;
- short blocks (windows): the paged attention kernel ("paged", external_ops/attention/
  paged_attention_op.cc), each block a "sequence" whose tokens all see its whole length
  (token_ctx = block length), read through a block table of block size 1 over k and v themselves
  as the cache; fp32.
block_attention_ref is the pure-Paddle reference (one batched matmul per distinct block length).
Under paddle.jit.to_static (an exported vision tower) cu_seqlens is a tensor and the lengths are
unknown: the GEMM path runs, for any block lengths (block_attention_traced).
"""
from collections import defaultdict

import numpy as np
import paddle
import paddle.nn.functional as F

from .. import settings
from ._build import build_info, compiled_ops, exec_attrs

COMPUTE_DTYPES = ("float32", "bfloat16")
# Mean block length from which the GEMM path beats the paged kernel (4800 tokens, 16 heads of 80,
# a Xeon with AMX): bf16 ties at 100-token windows (38 ms each), fp32 wins from 256 on
# (50 vs 53 ms; 64-token windows: 60 vs 43). One 4784-token block: 0.82 s -> 0.60 (fp32), 0.32 (bf16).
GEMM_MIN_MEAN_LENGTH = {"float32": 256, "bfloat16": 128}
# The fused AMX kernel against the paged one (4800 tokens in windows, 16 heads of 80, Xeon with AMX):
# 16-token windows 23 vs 23 GFLOP/s, 32: 59 vs 44, 64: 114 vs 70, 128: 205 vs 108.
AMX_MIN_MEAN_LENGTH = 32
AMX_MAX_HEAD_DIM = 80           # the fused kernel's tiles hold head dims up to 80, in steps of 16


def _check(q, k, v, cu_seqlens):
    if q.ndim != 3 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError(f"q, k, v must all be (N, H, D); got {q.shape}, {k.shape}, {v.shape}")
    bounds = list(cu_seqlens)
    if not bounds or bounds[0] != 0 or bounds[-1] != q.shape[0] or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"cu_seqlens must rise from 0 to N={q.shape[0]}; got {bounds}")


def _amx_applies(head_dim: int) -> bool:
    """Whether bf16 GEMM-path attention runs on the fused AMX kernel: the CPU has AMX, the head dim
    fits its tiles, and PADDLE_QWENVL_AMX_ATTENTION is not 0."""
    return build_info()["amx"] and head_dim % 16 == 0 and head_dim <= AMX_MAX_HEAD_DIM and settings.amx_attention()


def block_attention_path(q, cu_seqlens, compute_dtype: str = "float32") -> str:
    """Which path runs, the one place that decides: "reference" (no compiled ops, q not float32 or
    empty), "paged" (short blocks, or no oneDNN), "gemm" (oneDNN fp32), "gemm_bf16" (oneDNN bf16:
    compute_dtype "bfloat16" on a CPU with native bf16) or "amx" (bf16 on the fused AMX kernel)."""
    n = q.shape[0]
    if compiled_ops() is None or q.dtype != paddle.float32 or n == 0:
        return "reference"
    info = build_info()
    bf16 = compute_dtype == "bfloat16" and info["bf16"]
    amx = bf16 and _amx_applies(q.shape[2])
    blocks = int(np.count_nonzero(np.diff(np.asarray(cu_seqlens))))
    least = AMX_MIN_MEAN_LENGTH if amx else GEMM_MIN_MEAN_LENGTH["bfloat16" if bf16 else "float32"]
    if not info["onednn"] or n / blocks < least:
        return "paged"
    return "amx" if amx else "gemm_bf16" if bf16 else "gemm"


def block_attention(q, k, v, cu_seqlens, scale: float, compute_dtype: str = "float32"):
    """q, k, v (N, H, D) float; cu_seqlens host list [0, ..., N]: tokens attend only within their
    block. compute_dtype "bfloat16" lets long blocks run their GEMMs in bf16 (fp32 sums), as the
    model's bf16 linears do. The path is block_attention_path's choice."""
    if not paddle.in_dynamic_mode():
        return block_attention_traced(q, k, v, cu_seqlens, scale, compute_dtype)
    _check(q, k, v, cu_seqlens)
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}; got {compute_dtype!r}")
    path = block_attention_path(q, cu_seqlens, compute_dtype)
    if path == "reference":
        return block_attention_ref(q, k, v, cu_seqlens, scale)
    if path == "paged":
        return block_attention_paged(q, k, v, cu_seqlens, scale)
    return block_attention_gemm(q, k, v, cu_seqlens, scale, bf16=path != "gemm", amx=path == "amx")


def block_attention_traced(q, k, v, cu_seqlens, scale: float, compute_dtype: str = "float32"):
    """Inside paddle.jit.to_static: cu_seqlens an int64 tensor (B+1,); the GEMM path for every
    block (bf16 where compute_dtype asks and the CPU has it). Needs the compiled ops with oneDNN."""
    info = build_info()
    if not info["onednn"]:
        raise RuntimeError("exporting a vision tower needs the compiled ops built with oneDNN "
                           "(ops._build.build_info()['onednn'] is False); install onednn-devel and rebuild")
    bf16 = compute_dtype == "bfloat16" and info["bf16"]
    amx = bf16 and _amx_applies(q.shape[2])
    return compiled_ops().pqv_block_attention(q, k, v, cu_seqlens, float(scale), bf16, amx, *exec_attrs())


def block_attention_gemm(q, k, v, cu_seqlens, scale: float, bf16: bool = False, amx: bool = None):
    """The GEMM path (needs oneDNN; bf16 needs build_info()['bf16']); float32 q, k, v. amx: the
    fused AMX kernel instead of the GEMMs (bf16 only; needs build_info()['amx']); None: where
    _amx_applies."""
    cu = paddle.to_tensor(np.asarray(cu_seqlens, dtype=np.int64))
    amx = bool(bf16) and _amx_applies(q.shape[2]) if amx is None else bool(amx)
    return compiled_ops().pqv_block_attention(q, k, v, cu, float(scale), bool(bf16), amx, *exec_attrs())


def block_attention_paged(q, k, v, cu_seqlens, scale: float):
    """The paged-kernel path, fp32; float32 q, k, v."""
    n, heads, dim = q.shape
    starts, lengths = np.asarray(cu_seqlens[:-1]), np.diff(np.asarray(cu_seqlens))
    starts, lengths = starts[lengths > 0], lengths[lengths > 0]
    tables = np.zeros((len(starts), lengths.max()), dtype=np.int32)     # block size 1: slot = row
    for i, (s, length) in enumerate(zip(starts, lengths)):
        tables[i, :length] = np.arange(s, s + length)
    token_seq = np.repeat(np.arange(len(starts), dtype=np.int32), lengths)
    token_ctx = np.repeat(lengths.astype(np.int32), lengths)
    # k and v serve as their own cache (slot = row), and slot -1 writes nothing: no scratch copy
    # (a fresh 2 x 25 MB one cost ~12 ms per call for 4800 tokens x 16 heads x 80, page faults included)
    out, _, _ = compiled_ops().pqv_paged_attention(
        q, k, v, k, v, paddle.full([n], -1, dtype="int64"), paddle.to_tensor(tables),
        paddle.to_tensor(token_seq), paddle.to_tensor(token_ctx), float(scale), 1, [], *exec_attrs())
    return out


def block_attention_ref(q, k, v, cu_seqlens, scale: float):
    """Pure Paddle: blocks of equal length are batched together, (G, H, L, D) per distinct length L."""
    by_len = defaultdict(list)
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:]):
        if end > start:
            by_len[end - start].append(start)
    outs, order = [], []
    for length, starts in by_len.items():
        idx = (np.asarray(starts)[:, None] + np.arange(length)[None, :]).reshape(-1)
        order.append(idx)
        outs.append(_attend(*(_gather_blocks(t, idx, len(starts), length) for t in (q, k, v)), scale))
    out = paddle.concat(outs, axis=0)                                # blocks in grouped order
    inverse = np.argsort(np.concatenate(order))
    return paddle.gather(out, paddle.to_tensor(inverse))


def _gather_blocks(t, idx, groups, length):
    """(N, H, D) -> (G, H, L, D)."""
    x = paddle.gather(t, paddle.to_tensor(idx)) if len(idx) != t.shape[0] else t
    return x.reshape([groups, length, t.shape[1], t.shape[2]]).transpose([0, 2, 1, 3])


def _attend(q, k, v, scale):
    probs = F.softmax(paddle.matmul(q, k, transpose_y=True) * scale, axis=-1)
    out = paddle.matmul(probs, v)                                    # (G, H, L, D)
    return out.transpose([0, 2, 1, 3]).reshape([-1, q.shape[1], q.shape[3]])
