"""Compiled paged attention vs paged_attention_ref over the slot-major cache.

Decode tokens (query length 1) take the all-kv-heads streaming path, longer query runs the
prefill tiles (external_ops/attention/paged_attention_op.cc); both are checked here on the AVX512 kernels
(when the CPU has them and D % 16 == 0) and, in a subprocess, on the portable ones.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_qwenvl.ops.attention_metadata import AttentionMetadata
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.ops.paged_attention import paged_attention, paged_attention_ref, token_layout

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")


def make_batch(q_lens, ctx_lens, hq, hkv, d, block_size, seed=0):
    """Random q/k/v and caches; each sequence's blocks are scattered over a shuffled pool."""
    rng = np.random.default_rng(seed)
    need = [(c + block_size - 1) // block_size for c in ctx_lens]
    num_blocks = sum(need) + 2
    pool = rng.permutation(num_blocks)
    tables = np.full((len(ctx_lens), max(need)), -1, dtype=np.int32)
    slots, used = [], 0
    for i, (m, n) in enumerate(zip(q_lens, ctx_lens)):
        tables[i, :need[i]] = pool[used:used + need[i]]
        used += need[i]
        slots += [tables[i, p // block_size] * block_size + p % block_size for p in range(n - m, n)]
    meta = AttentionMetadata(list(q_lens), list(ctx_lens), paddle.to_tensor(np.array(slots, dtype=np.int64)),
                             paddle.to_tensor(tables), block_size)
    t = sum(q_lens)
    arr = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype("float32"))
    return arr(t, hq, d), arr(t, hkv, d), arr(t, hkv, d), arr(num_blocks * block_size, hkv, d), \
        arr(num_blocks * block_size, hkv, d), meta


CASES = [  # q_lens, ctx_lens, Hq, Hkv, D, block_size
    ([1], [1], 2, 1, 16, 4),                          # single token, empty cache before
    ([5], [5], 4, 2, 32, 4),                          # prefill ending one past a block boundary
    ([8], [8], 4, 2, 32, 4),                          # prefill filling exactly two blocks
    ([3, 1, 1], [7, 9, 300], 12, 2, 128, 16),         # mixed chunked prefill + decode, GQA 6
    ([17, 1], [17, 600], 6, 3, 64, 16),               # GQA 2, odd lengths
    ([1], [1000], 4, 1, 64, 16),                      # one decode item: split over positions
    ([1, 1, 1], [33, 64, 65], 7, 7, 80, 32),          # MHA, D not a multiple of 16, block edges
    ([40], [40], 2, 2, 128, 256),                     # block larger than the sequence
    ([1, 1, 1, 1], [4096, 4000, 17, 1], 28, 4, 128, 16),   # decode batch, 7B shape, uneven contexts
    ([1, 1], [300, 77], 40, 8, 128, 16),              # GQA 5 (Qwen2.5-VL-32B): a 5-row score block
    ([1, 1], [200, 33], 16, 2, 128, 16),              # GQA 8 (Qwen2.5-VL-3B): two 4-row passes
]

# Prefill tiles (query runs > 1): tolerance rtol=1e-4, atol=2e-5 as above (fp32 throughout; the
# reference sums in another order).
PREFILL_CASES = [  # q_lens, ctx_lens, Hq, Hkv, D, block_size
    ([1024], [1024], 12, 2, 128, 16),                 # long, GQA 6, 2B shape
    ([333], [333], 28, 4, 128, 16),                   # odd length, GQA 7, 7B shape
    ([97], [97], 7, 7, 64, 32),                       # GQA 1 (MHA), D=64
    ([129], [129], 4, 2, 80, 16),                     # GQA 2, D=80 (portable kernels), block edge + 1
    ([64], [64], 12, 2, 128, 16),                     # exactly 4 blocks, 7 tiles of 10 rows x 6 heads
    ([50, 1, 31], [250, 700, 31], 12, 2, 64, 16),     # chunked prefill after 200 cached + decode + prefill
    ([2, 1], [47, 48], 28, 4, 128, 16),               # 2-token chunk: a 14-row tile
    ([31], [31], 6, 1, 128, 4),                       # GQA 6 with a single kv head, small blocks
]


def _bf16(t):
    return t.astype("bfloat16").astype("float32")


def check_against_reference(q_lens, ctx_lens, hq, hkv, d, bs):
    q, k, v, kc, vc, meta = make_batch(q_lens, ctx_lens, hq, hkv, d, bs)
    kc_ref, vc_ref = kc.clone(), vc.clone()
    ref = paged_attention_ref(q, k, v, kc_ref, vc_ref, meta, scale=d ** -0.5)
    out = paged_attention(q, k, v, kc, vc, meta, scale=d ** -0.5)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_array_equal(kc.numpy(), kc_ref.numpy())
    np.testing.assert_array_equal(vc.numpy(), vc_ref.numpy())
    slots = meta.slot_mapping.numpy()
    np.testing.assert_array_equal(kc.numpy()[slots], k.numpy())   # new keys really landed in place


@needs_ops
@pytest.mark.parametrize("q_lens,ctx_lens,hq,hkv,d,bs", CASES)
def test_kernel_matches_reference_and_writes_the_cache(q_lens, ctx_lens, hq, hkv, d, bs):
    check_against_reference(q_lens, ctx_lens, hq, hkv, d, bs)


@needs_ops
@pytest.mark.parametrize("q_lens,ctx_lens,hq,hkv,d,bs", PREFILL_CASES)
def test_prefill_tiles_match_reference(q_lens, ctx_lens, hq, hkv, d, bs):
    check_against_reference(q_lens, ctx_lens, hq, hkv, d, bs)


def check_bf16_cache(q_lens, ctx_lens, hq, hkv, d, bs):
    """bf16 caches (a bf16 model's): k/v are stored rounded to bf16 (as Paddle's cast rounds), and
    the output is the fp32 kernel's on fp32 caches holding those values, bit for bit (the rows are
    widened exactly as they are read); the reference path takes bf16 caches too."""
    q, k, v, kc, vc, meta = make_batch(q_lens, ctx_lens, hq, hkv, d, bs)
    kb, vb = kc.astype("bfloat16"), vc.astype("bfloat16")
    kw, vw = kb.astype("float32"), vb.astype("float32")
    out = paged_attention(q, k, v, kb, vb, meta, d ** -0.5).numpy()
    np.testing.assert_array_equal(out, paged_attention(q, _bf16(k), _bf16(v), kw, vw, meta, d ** -0.5).numpy())
    np.testing.assert_array_equal(kb.astype("float32").numpy(), kw.numpy())
    np.testing.assert_array_equal(vb.astype("float32").numpy(), vw.numpy())
    kr, vr = kc.astype("bfloat16"), vc.astype("bfloat16")
    ref = paged_attention_ref(q, k, v, kr, vr, meta, d ** -0.5).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_array_equal(kr.astype("float32").numpy(), kw.numpy())


@needs_ops
@pytest.mark.parametrize("q_lens,ctx_lens,hq,hkv,d,bs", CASES + PREFILL_CASES[1:])
def test_bf16_cache_is_the_fp32_kernel_on_rounded_values(q_lens, ctx_lens, hq, hkv, d, bs):
    check_bf16_cache(q_lens, ctx_lens, hq, hkv, d, bs)


def test_caches_of_other_or_mixed_dtypes_are_rejected():
    q, k, v, kc, vc, meta = make_batch([4], [4], 2, 1, 16, 4)
    for kcache, vcache in ((kc.astype("float16"), vc.astype("float16")), (kc, vc.astype("bfloat16"))):
        with pytest.raises(ValueError, match="both float32 or both bfloat16"):
            paged_attention(q, k, v, kcache, vcache, meta, 0.25)


@needs_ops
def test_portable_kernels_match_reference():
    """PADDLE_QWENVL_KERNELS=portable (read once per process, hence the subprocess) runs every
    case, decode and prefill, on attention/paged_portable.cc, with fp32 and bf16 caches."""
    env = dict(os.environ, PADDLE_QWENVL_KERNELS="portable")
    script = ("import sys; sys.path.insert(0, %r); import test_paged_attention as t\n"
              "from paddle_qwenvl.ops._build import build_info; assert not build_info()['avx512']\n"
              "for case in t.CASES + t.PREFILL_CASES[1:]: t.check_against_reference(*case)\n"
              "for case in t.CASES[:7] + t.PREFILL_CASES[3:5]: t.check_bf16_cache(*case)\n"
              "print('portable ok')" % os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "portable ok" in done.stdout, done.stderr[-3000:]


needs_bf16_gemm = pytest.mark.skipif(compiled_ops() is None or not (build_info()["bf16"] and build_info()["onednn"]),
                                     reason="needs oneDNN and a CPU with native bf16")

# bf16 mode: fresh prompts of >= 128 tokens take the causal GEMM path (external_ops/attention/gemm_attention.cc)
BF16_CASES = [  # q_lens, ctx_lens, Hq, Hkv, D, block_size; the fresh long prompts are the GEMM's
    ([300], [300], 12, 2, 128, 16),                   # 2 chunks of 160 rows, the second overlapping
    ([1100], [1100], 4, 2, 64, 64),                   # 5 chunks, 3 key blocks (tail 356)
    ([130, 1, 200, 40], [130, 500, 260, 40], 6, 3, 80, 16),   # fresh + decode + chunked + short fresh
    ([128, 700], [128, 700], 28, 4, 128, 64),         # two fresh prompts side by side, GQA 7
]


def _fresh_rows(q_lens, ctx_lens):
    """Boolean per query token: whether its sequence is a fresh prompt of >= 128 tokens."""
    return np.concatenate([np.full(m, m == n and m >= 128) for m, n in zip(q_lens, ctx_lens)])


@needs_bf16_gemm
@pytest.mark.parametrize("q_lens,ctx_lens,hq,hkv,d,bs", BF16_CASES)
def test_bf16_fresh_prompts_take_the_gemm_path(q_lens, ctx_lens, hq, hkv, d, bs):
    """Fresh prompts: against the reference on bf16-rounded q, k, v at 1e-2 (the numerators' bf16
    rounding, as in test_block_attention.py) and different from fp32 (the bf16 GEMMs ran). All other
    tokens: the fp32 kernel's output exactly. The cache is written as in fp32 mode."""
    q, k, v, kc, vc, meta = make_batch(q_lens, ctx_lens, hq, hkv, d, bs)
    kc32, vc32 = kc.clone(), vc.clone()
    out32 = paged_attention(q, k, v, kc32, vc32, meta, d ** -0.5).numpy()
    out = paged_attention(q, k, v, kc, vc, meta, d ** -0.5, compute_dtype="bfloat16").numpy()
    np.testing.assert_array_equal(kc.numpy(), kc32.numpy())
    np.testing.assert_array_equal(vc.numpy(), vc32.numpy())
    fresh = _fresh_rows(q_lens, ctx_lens)
    np.testing.assert_array_equal(out[~fresh], out32[~fresh])
    ref = paged_attention_ref(_bf16(q), _bf16(k), _bf16(v), kc.clone(), vc.clone(), meta, d ** -0.5).numpy()
    np.testing.assert_allclose(out[fresh], ref[fresh], rtol=1e-2, atol=1e-2)
    assert np.abs(out[fresh] - out32[fresh]).max() > 1e-4


@needs_bf16_gemm
def test_bf16_causal_rows_see_only_their_past():
    """Changing the last key and value of a fresh prompt changes only its last row's output."""
    q, k, v, kc, vc, meta = make_batch([256], [256], 4, 2, 64, 16)
    out = paged_attention(q, k, v, kc, vc, meta, 0.125, compute_dtype="bfloat16").numpy()
    k2, v2 = k.numpy().copy(), v.numpy().copy()
    k2[-1] += 3.0
    v2[-1] -= 3.0
    out2 = paged_attention(q, paddle.to_tensor(k2), paddle.to_tensor(v2), kc, vc, meta, 0.125,
                           compute_dtype="bfloat16").numpy()
    np.testing.assert_array_equal(out2[:-1], out[:-1])
    assert np.abs(out2[-1] - out[-1]).max() > 1e-3


def test_unknown_compute_dtype_is_rejected():
    q, k, v, kc, vc, meta = make_batch([4], [4], 2, 1, 16, 4)
    with pytest.raises(ValueError, match="compute_dtype"):
        paged_attention(q, k, v, kc, vc, meta, 0.25, compute_dtype="float16")


def test_token_layout_gives_causal_context_per_token():
    meta = AttentionMetadata([3, 1], [5, 9], paddle.zeros([4], "int64"), paddle.zeros([2, 3], "int32"), 4)
    seq, ctx = token_layout(meta)
    assert seq.numpy().tolist() == [0, 0, 0, 1]
    assert ctx.numpy().tolist() == [3, 4, 5, 9]
