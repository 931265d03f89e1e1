// Attention kernels below the ops (paged_attention_op.cc, gemm_attention.cc), per instruction set:
//   paged_avx512.cc / paged_portable.cc      the paged kernel's inner loops (AttnKernelsT)
//   softmax_avx512.cc / softmax_portable.cc  the GEMM engine's row softmax (softmax_row_*)
//   block_amx.cc                             fused attention over whole spans on AMX tiles
// The AVX512 / AMX files are compiled for their instruction sets by pragmas and only called after
// run-time CPU checks (pqv::Exec::avx512(), fast_bf16(), amx_ready()). No Paddle headers here.
#pragma once
#include <cstdint>

namespace pqv {

// The paged kernel's inner loops over R query rows (decode: the G heads of one token that share a
// kv head; prefill: a tile of tokens x those G heads), q (R, D) contiguous and already scaled.
// K / V rows are given as n row pointers (D values each; scattered over the cache blocks).
// ahead (decode; nullptr: none): one row pointer per K/V row of the call, the row the caller reads
// next (paged_attention_op.cc's attend_decode: while scoring a chunk, its V rows; while
// accumulating, the next head's or chunk's K rows). Reading row j, the kernel prefetches ahead[j]
// line by line in step (one prefetch per 64 bytes read, only on its first pass over the rows), so
// the DRAM requests are spread over the arithmetic, at the cost of one instruction per line.
// Decode (row-major scores s (R, lds), R = G rows of one token):
// scores:       s[r * lds + j] = q[r] . k[j]                      r < R, j < n
// softmax_step: one row's chunk of n <= 32 scores s folded into its running max *m and sum *l:
//   s[j] = exp(s[j] - new_m); *l = *l * alpha + sum_j s[j]; returns alpha = exp(old_m - new_m)
// Prefill tile (scores transposed, st (n, Rp), so the softmax runs down columns without
// horizontal sums; qt (D, Rp) is the tile's scaled query rows transposed, Rp = R rounded up to 16):
// scores_t:     st[j * Rp + r] = k[j] . q[r]                      j < n, r < Rp
// softmax_t:    column r sees rows j < valid[r] (0..n; causal), the rest become 0; m, l, alpha (Rp)
//   as softmax_step, per column; a column with nothing seen yet keeps m = -inf, l = 0.
// Both:
// accumulate:   acc[r] = alpha[r] * acc[r] + sum_j p[r * pr + j * pj] * v[j]      acc (R, D)
// The AVX512 variants need D % 16 == 0; the portable ones take any D.
// K / V rows of type T: float, or bf16 bits (uint16_t: a bf16 KV cache, a bfloat16 model's), which
// the kernels widen as they read them (exact); the arithmetic is the same.
template <typename T>
struct AttnKernelsT {
  void (*scores)(const float* q, int64_t R, const T* const* k, int64_t n, int64_t D, float* s, int64_t lds,
                 const T* const* ahead);
  float (*softmax_step)(float* s, int64_t n, float* m, float* l);
  void (*scores_t)(const float* qt, int64_t Rp, const T* const* k, int64_t n, int64_t D, float* st);
  void (*softmax_t)(float* st, int64_t n, int64_t Rp, const int32_t* valid, float* m, float* l, float* alpha);
  void (*accumulate)(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, int64_t R,
                     const T* const* v, int64_t n, int64_t D, const T* const* ahead);
};
using AttnKernels = AttnKernelsT<float>;
using AttnKernelsBf16 = AttnKernelsT<uint16_t>;
extern const AttnKernels kAttnAvx512;
extern const AttnKernels kAttnPortable;
extern const AttnKernelsBf16 kAttnAvx512Bf16;
extern const AttnKernelsBf16 kAttnPortableBf16;

// The GEMM engine's softmax (gemm_attention.cc), one step of an online softmax over a row of n
// scores s: *m = max(*m, max_j s[j]) (a running max, -inf at first); e[j] = exp(scale * (s[j] - *m))
// for j < n into p (floats), or into pb as bf16 bits (round to nearest even) when p is null;
// returns sum_j e[j] (fp32 values). AVX512: bf16 output needs AVX512-BF16 and takes an exp accurate
// to ~4e-5 only.
float softmax_row_avx512(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb);
float softmax_row_portable(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb);

// Attention of query rows against a whole span of keys on AMX tiles (block_amx.cc), flash-style,
// transposed: per block of kAmxKeys keys, S^T = K q^T (fp32 tiles), an online softmax down the
// key rows in L1, O^T += V^T P^T, for groups of 16 query rows. Operands in bf16, in the layouts of
// amx_pack_q / amx_pack_k / amx_pack_v, 64-byte aligned (a tile row split over two cache lines
// halved the speed):
//  q: `groups` groups of 16 rows (rows past `rows` are padding, not written), head dim D <= 80
//     (a multiple of 16) padded to Dp = amx_padded_depth(D);
//  k, v: `keys` keys, padded to whole blocks.
// out row r at out + r * out_stride (fp32, D). scratch: amx_scratch_floats(groups, D) floats,
// 64-byte aligned.
constexpr int64_t kAmxKeys = 32;
struct AmxAttention {
  const uint16_t* q; const uint16_t* k; const uint16_t* v;
  int64_t rows, groups, keys, D;
  float scale;
  float* out; int64_t out_stride;
  float* scratch;
};
bool amx_ready();                                         // AMX-BF16 present and its tiles granted
int64_t amx_padded_depth(int64_t D);                      // Dp
int64_t amx_k_elems(int64_t keys, int64_t D);             // uint16 elements of a packed K
int64_t amx_v_elems(int64_t keys, int64_t D);             // ... of a packed V
int64_t amx_scratch_floats(int64_t groups, int64_t D);
// Pack `rows` / `keys` rows of q, k or v (rows `stride` floats apart, D floats each) to those
// layouts.
void amx_pack_q(const float* q, int64_t stride, int64_t rows, int64_t groups, int64_t D, uint16_t* out);
void amx_pack_k(const float* k, int64_t stride, int64_t keys, int64_t D, uint16_t* out);
void amx_pack_v(const float* v, int64_t stride, int64_t keys, int64_t D, uint16_t* out);
void amx_attention(const AmxAttention& a);

}  // namespace pqv
