// Raw-pointer kernels behind the ops. Each has an AVX512 variant (kernels_avx512.cc, compiled
// for AVX512 by a pragma and only called after a run-time CPU check) and a portable variant
// (kernels_portable.cc). Layouts: row-major; weights (N, K) as in HF (out_features, in_features).
#pragma once
#include <cstdint>

namespace pqv {

// Decode GEMVs software-prefetch the weights kWeightsAhead weights ahead in their stream (int8:
// 4 KB, int4: 2 KB). Measured through the ops (2 threads, 2048x11008 and 11008x2048, weights
// past L3, fraction of the DRAM read probe): int8 VNNI 1 KB ahead 79-91%, 2 KB 77-95%, 4 KB
// 92-97%, 8 KB 83-92%; int4 1 KB 73-87%, 2 KB 78-89%, 4 KB 76-89%, 8 KB 60-77%.
constexpr int64_t kWeightsAhead = 4096;

// Decode GEMVs read 4 weight rows at once, one from each quarter of their range [n0, n1): four
// sequential streams in flight instead of one (dense and int8 for any M < 16, int4 VNNI groups 128
// and 64 for M = 1). Measured through the ops on the 2026-12-01 Intel machine (2 threads, weights
// past L3): M = 1 dense fp32 / bf16 20 -> 25-27 / 25-34 GB/s, where the read probe gives 1 stream
// ~20 and 4-8 streams 26-31; M = 4 dense 11-22 -> 24-28, int8 VNNI 15-16 -> 21-27; int4 group 64
// (2048x11008, 11008x2048) 11-14.5 -> 14-18 GB/s. row4(ns) takes
// the 4 row indices; rows left over go to row1(n).
template <typename Row4, typename Row1>
inline void rows_in_four_streams(int64_t n0, int64_t n1, Row4 row4, Row1 row1) {
  const int64_t per = (n1 - n0) / 4;
  for (int64_t i = 0; i < per; ++i) {
    const int64_t ns[4] = {n0 + i, n0 + per + i, n0 + 2 * per + i, n0 + 3 * per + i};
    row4(ns);
  }
  for (int64_t n = n0 + 4 * per; n < n1; ++n) row1(n);
}

// Dense decode GEMV: y (M, N) = x (M, K) @ w^T + bias[n]; w (N, K) float32, or bfloat16 bits
// (uint16) when bf16; bias may be null. AVX512 only: callers without it use oneDNN or Paddle.
struct DenseGemv {
  const float* x; const void* w; bool bf16; const float* bias; float* y;
  int64_t M, N, K;
};
void dense_gemv_avx512(const DenseGemv& p, int64_t n0, int64_t n1);

// y (M, N) = x (M, K) @ dequant(w)^T * scale[n] + bias[n]; w int8 (N, K); bias may be null.
struct Int8Gemv {
  const float* x; const int8_t* w; const float* scales; const float* bias; float* y;
  int64_t M, N, K;
};
// w uint8 (N, K/2): byte j holds k=2j in its low nibble and k=2j+1 in its high nibble, each
// stored as q+8 with q in [-8, 7]; scales (N, K/group). K % group == 0, group % 64 == 0.
struct Int4Gemv {
  const float* x; const uint8_t* w; const float* scales; const float* bias; float* y;
  int64_t M, N, K, group;
};

void int8_gemv_avx512(const Int8Gemv& p, int64_t n0, int64_t n1);
void int8_gemv_portable(const Int8Gemv& p, int64_t n0, int64_t n1);
// AVX512 int4 wants p.x permuted per 64-chunk into [even k | odd k] and xsum (M, K/group) the
// per-group sums of x; int4_prepare writes both.
void int4_prepare(const float* x, int64_t M, int64_t K, int64_t group, float* xp, float* xsum);
void int4_gemv_avx512(const Int4Gemv& p, const float* xsum, int64_t n0, int64_t n1);
void int4_gemv_portable(const Int4Gemv& p, int64_t n0, int64_t n1);

// Weight-only prefill tiles in bf16 (kernels_bf16.cc; callers check has_fast_bf16()): one weight
// row to K bf16 values. int8: q itself, exact (the caller applies the per-channel scale to the
// GEMM's output); int4 (K % 32 == 0): (q - 8) * its group's scale, rounded to nearest even.
void int8_row_bf16(const int8_t* w, int64_t K, uint16_t* out);
void int4_row_bf16(const uint8_t* w, const float* scales, int64_t K, int64_t group, uint16_t* out);

// VNNI decode path: activations quantized per row and per block (int8, symmetric; block 64 for
// int8 weights, block = group for int4; block % 16 == 0 and <= 256), then vpdpbusd on the raw weight bytes.
struct QuantX {
  const int8_t* q;      // (M, K) int8; for int4 permuted per block into [even k | odd k]
  const float* scale;   // (M, K/block) dequantization scale of each block
  const float* off;     // (M, K/block) scale * sum of the block's int8 values
  const float* off_total;  // (M,) sum of off over the row's blocks
  int64_t block;
};
void quantize_x_blocks(const float* x, int64_t M, int64_t K, int64_t block, bool permute, int8_t* q,
                       float* scale, float* off, float* off_total);
void int8_gemv_vnni(const Int8Gemv& p, const QuantX& xq, int64_t n0, int64_t n1);
void int4_gemv_vnni(const Int4Gemv& p, const QuantX& xq, int64_t n0, int64_t n1);

// Attention inner loops over R query rows (decode: the G heads of one token that share a kv head;
// prefill: a tile of tokens x those G heads), q (R, D) contiguous and already scaled.
// K / V rows are given as n row pointers (D values each; scattered over the cache blocks).
// ahead (decode; nullptr: none): one row pointer per K/V row of the call, the row that will be
// read a fixed number of positions later (kPrefetchAhead in paged_attention_op.cc). Reading row j, the kernel prefetches ahead[j] line by line
// in step (one prefetch per 64 bytes read, only on its first pass over the rows), so the DRAM
// requests are spread over the arithmetic at a fixed distance ahead, at the cost of one
// instruction per line.
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

// Row kernels for the fused elementwise ops (one row of H or n floats per call).
// rms_norm:     out = x / sqrt(mean(x^2) + eps) * w
// add_rms_norm: res_out = x + res; out = rms_norm(res_out)
// silu_mul:     out = silu(g) * u
// quick_gelu:   out = x * sigmoid(1.702 x)   (Qwen2-VL's vision MLP)
// layer_norm:   out = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (Qwen2-VL's vision blocks)
// softmax_row:  one step of an online softmax: *m = max(*m, max_j s[j]) (a running max, -inf at
//               first); e[j] = exp(scale * (s[j] - *m)) for j < n into p (floats), or into pb as
//               bf16 bits (round to nearest even) when p is null; returns sum_j e[j] (fp32 values).
//               AVX512: bf16 output needs AVX512-BF16 and takes an exp accurate to ~4e-5 only.
struct RowKernels {
  void (*rms_norm)(const float* x, const float* w, float* out, int64_t H, float eps);
  void (*add_rms_norm)(const float* x, const float* res, const float* w, float* out, float* res_out, int64_t H,
                       float eps);
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  void (*quick_gelu)(const float* x, float* out, int64_t n);
  float (*softmax_row)(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb);
  void (*layer_norm)(const float* x, const float* w, const float* b, float* out, int64_t H, float eps);
};
extern const RowKernels kRowAvx512;
extern const RowKernels kRowPortable;

// Attention of query rows against a whole span of keys on AMX tiles (kernels_amx.cc), flash-style,
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

// Sum of all floats in [p, p + n): the DRAM read-bandwidth probe.
float sum_avx512(const float* p, int64_t n, int streams);

}  // namespace pqv
