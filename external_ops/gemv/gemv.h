// Decode GEMVs (few activation rows, weights streamed once from DRAM): the kernels behind
// pqv_linear's and pqv_weight_only_int8 / int4's decode path (linear/). Per instruction set:
//   dense_avx512.cc          float32 / bf16 weights, fp32 activations
//   weight_only_avx512.cc    int8 / int4 weights, fp32 activations (the exact path)
//   weight_only_vnni.cc      int8 / int4 weights, activations quantized to int8 (AVX512-VNNI)
//   weight_only_rows_vnni.cc int8 / int4 weights, many activation rows quantized to int8 (AVX512-VNNI)
//   weight_only_portable.cc  int8 / int4 weights, any x86-64 CPU
// The AVX512 files are compiled for AVX512 by a pragma and only called after a run-time CPU check
// (pqv::Exec::avx512()). Layouts: row-major; weights (N, K) as in HF (out_features, in_features).
// Each function computes output columns [n0, n1) (the caller splits them over threads).
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
// and 64 for M = 1). Measured through the ops on an Intel Xeon (2 threads, weights
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

// The same product in bf16 math: x already rounded to bf16 (as the oneDNN bf16 GEMM rounds it),
// w bf16, products summed in fp32 by vdpbf16ps (AVX512-BF16: 32 multiply-adds per instruction).
// Blocks of 4 weight rows meet the x rows 4 at a time, so the weights are read from memory once
// for any M while the arithmetic runs at the instruction's rate (for the few dozen rows of a batch
// of decodes or a prefill chunk: x stays in L2).
struct Bf16Gemv {
  const uint16_t* x; const uint16_t* w; const float* bias; float* y;
  int64_t M, N, K;
};
void bf16_gemv_avx512(const Bf16Gemv& p, int64_t n0, int64_t n1);

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
// The same products for many x rows (weight_only_rows_vnni.cc): panels of weight rows repacked
// for vpdpbusd and register-blocked over x rows, so the weights are read once at the VNNI rate.
void int8_rows_vnni(const Int8Gemv& p, const QuantX& xq, int64_t n0, int64_t n1);
void int4_rows_vnni(const Int4Gemv& p, const QuantX& xq, int64_t n0, int64_t n1);

}  // namespace pqv
