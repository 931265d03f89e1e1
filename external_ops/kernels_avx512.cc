// AVX512 kernels that keep activations in fp32. The pragma makes the compiler emit AVX512 for
// this file only; callers check pqv::has_avx512() first (and has_fast_bf16() before asking for
// bf16 output: softmax_row). No Paddle headers here, so nothing else
// is built for AVX512.
//
// GEMVs walk one weight row at a time: a single sequential stream per thread is what the
// hardware prefetcher follows at full DRAM speed (4 interleaved row streams got ~60% of it).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "kernels.h"
#include "simd_exp.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pqv {
namespace {

// Fully unrolls a loop over a register block. Without it GCC kept the block's accumulator arrays
// (e.g. 16 __m512) in memory around the loops (a memset to zero them, spills before reduce16):
// the decode scores ran at 70% of the speed they have with it.
#define PQV_UNROLL _Pragma("GCC unroll 16")

inline __m512 load_i8x16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

inline float reduce4(const __m512 a[4]) {
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}

// MR activation rows against weight row n; 4 partial sums per row break the FMA latency chain.
template <int MR>
inline void int8_row(const Int8Gemv& p, int64_t m, int64_t n) {
  const int64_t K = p.K;
  const int8_t* w = p.w + n * K;
  __m512 acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(w + k + kWeightsAhead), _MM_HINT_T0);
    for (int j = 0; j < 4; ++j) {
      const __m512 wv = load_i8x16(w + k + 16 * j);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j), acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float s = reduce4(acc[i]);
    for (int64_t t = k; t < K; ++t) s += p.x[(m + i) * K + t] * w[t];
    p.y[(m + i) * p.N + n] = s * p.scales[n] + (p.bias ? p.bias[n] : 0.f);
  }
}

// MR activation rows against the 4 int8 weight rows ns (rows_in_four_streams in kernels.h); one
// row gets 2 accumulators per weight row, more rows 1 each.
template <int MR>
inline void int8_row4(const Int8Gemv& p, int64_t m, const int64_t* ns) {
  constexpr int J = MR == 1 ? 2 : 1;
  const int64_t K = p.K;
  const int8_t* w[4];
  __m512 acc[4][MR][J];
  PQV_UNROLL for (int r = 0; r < 4; ++r) {
    w[r] = p.w + ns[r] * K;
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      PQV_UNROLL for (int j = 0; j < J; ++j) acc[r][i][j] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 16 * J <= K; k += 16 * J) {
    if (k % 64 == 0)
      PQV_UNROLL for (int r = 0; r < 4; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + k + kWeightsAhead / 4), _MM_HINT_T0);
    PQV_UNROLL for (int j = 0; j < J; ++j) {
      __m512 xv[MR];
      PQV_UNROLL for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j);
      PQV_UNROLL for (int r = 0; r < 4; ++r) {
        const __m512 wv = load_i8x16(w[r] + k + 16 * j);
        PQV_UNROLL for (int i = 0; i < MR; ++i) acc[r][i][j] = _mm512_fmadd_ps(wv, xv[i], acc[r][i][j]);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < MR; ++i) {
      __m512 a = acc[r][i][0];
      PQV_UNROLL for (int j = 1; j < J; ++j) a = _mm512_add_ps(a, acc[r][i][j]);
      float s = _mm512_reduce_add_ps(a);
      for (int64_t t = k; t < K; ++t) s += p.x[(m + i) * K + t] * w[r][t];
      p.y[(m + i) * p.N + ns[r]] = s * p.scales[ns[r]] + (p.bias ? p.bias[ns[r]] : 0.f);
    }
}

// 32 packed bytes -> 64 weights as four fp32 vectors, in the order of the permuted x chunk.
inline void unpack_int4x64(const uint8_t* p, __m512 w[4]) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(b, mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), mask);
  w[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(lo)));
  w[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(lo, 1)));
  w[2] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(hi)));
  w[3] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(hi, 1)));
}

// xp: x rows permuted per 64-chunk into [even k (32) | odd k (32)] to match unpack_int4x64.
// xsum: (M, K/group) per-group sums of x, for the +8 storage offset.
template <int MR>
inline void int4_row(const Int4Gemv& p, const float* xsum, int64_t m, int64_t n) {
  const int64_t K = p.K, G = K / p.group, chunks = p.group / 64;
  const uint8_t* wr = p.w + n * (K / 2);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512 gacc[MR][4];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < 4; ++j) gacc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t k = (g * chunks + c) * 64;
      _mm_prefetch(reinterpret_cast<const char*>(wr + k / 2 + kWeightsAhead / 2), _MM_HINT_T0);
      __m512 w[4];
      unpack_int4x64(wr + k / 2, w);
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < 4; ++j)
          gacc[i][j] = _mm512_fmadd_ps(w[j], _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j), gacc[i][j]);
    }
    const __m512 s = _mm512_set1_ps(p.scales[n * G + g]);
    for (int i = 0; i < MR; ++i)
      acc[i] = _mm512_fmadd_ps(_mm512_add_ps(_mm512_add_ps(gacc[i][0], gacc[i][1]), _mm512_add_ps(gacc[i][2], gacc[i][3])),
                               s, acc[i]);
  }
  for (int i = 0; i < MR; ++i) {
    float off = 0.f;  // sum_g scale_g * sum(x in group g): the +8 offset of the stored nibbles
    for (int64_t g = 0; g < G; ++g) off += p.scales[n * G + g] * xsum[(m + i) * G + g];
    p.y[(m + i) * p.N + n] = _mm512_reduce_add_ps(acc[i]) - 8.f * off + (p.bias ? p.bias[n] : 0.f);
  }
}

}  // namespace

namespace {

// 16 weights of a row as fp32: float32 directly, bf16 by moving the bits up (exact).
template <bool BF16>
inline __m512 load_w16(const void* w, int64_t k, __mmask16 mask = 0xFFFF) {
  if constexpr (BF16) {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(w) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(w) + k);
  }
}

// MR activation rows against dense weight row n: one sequential stream, 4 partial sums per row.
template <int MR, bool BF16>
inline void dense_row(const DenseGemv& p, int64_t m, int64_t n) {
  const int64_t K = p.K, esize = BF16 ? 2 : 4;
  const char* wr = static_cast<const char*>(p.w) + n * K * esize;
  __m512 acc[MR][4];
  PQV_UNROLL for (int i = 0; i < MR; ++i)
    PQV_UNROLL for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    PQV_UNROLL for (int l = 0; l < esize; ++l)        // 64 weights = esize lines
      _mm_prefetch(wr + (k + kWeightsAhead) * esize + 64 * l, _MM_HINT_T0);
    PQV_UNROLL for (int j = 0; j < 4; ++j) {
      const __m512 wv = load_w16<BF16>(wr, k + 16 * j);
      PQV_UNROLL for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j), acc[i][j]);
    }
  }
  for (; k < K; k += 16) {                            // tail: masked 16-wide steps
    const __mmask16 mask = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    const __m512 wv = load_w16<BF16>(wr, k, mask);
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      acc[i][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, p.x + (m + i) * K + k), acc[i][0]);
  }
  PQV_UNROLL for (int i = 0; i < MR; ++i)
    p.y[(m + i) * p.N + n] = reduce4(acc[i]) + (p.bias ? p.bias[n] : 0.f);
}

template <bool BF16>
void dense_rows(const DenseGemv& p, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) dense_row<4, BF16>(p, m, n);
    for (; m < p.M; ++m) dense_row<1, BF16>(p, m, n);
  }
}

// MR activation rows against the 4 weight rows ns (rows_in_four_streams in kernels.h); one row
// gets 2 accumulators per weight row (enough FMA chains), more rows 1 each (registers).
template <int MR, bool BF16>
inline void dense_row4(const DenseGemv& p, int64_t m, const int64_t* ns) {
  constexpr int J = MR == 1 ? 2 : 1;
  const int64_t K = p.K, esize = BF16 ? 2 : 4, lines = std::max<int64_t>(1, 16 * J * esize / 64);
  const char* wr[4];
  PQV_UNROLL for (int r = 0; r < 4; ++r) wr[r] = static_cast<const char*>(p.w) + ns[r] * K * esize;
  __m512 acc[4][MR][J];
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      PQV_UNROLL for (int j = 0; j < J; ++j) acc[r][i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 * J <= K; k += 16 * J) {
    PQV_UNROLL for (int r = 0; r < 4; ++r)
      for (int64_t l = 0; l < lines; ++l) _mm_prefetch(wr[r] + (k + kWeightsAhead / 4) * esize + 64 * l, _MM_HINT_T0);
    PQV_UNROLL for (int j = 0; j < J; ++j) {
      __m512 xv[MR];
      PQV_UNROLL for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j);
      PQV_UNROLL for (int r = 0; r < 4; ++r) {
        const __m512 wv = load_w16<BF16>(wr[r], k + 16 * j);
        PQV_UNROLL for (int i = 0; i < MR; ++i) acc[r][i][j] = _mm512_fmadd_ps(wv, xv[i], acc[r][i][j]);
      }
    }
  }
  for (; k < K; k += 16) {
    const __mmask16 mask = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    PQV_UNROLL for (int r = 0; r < 4; ++r) {
      const __m512 wv = load_w16<BF16>(wr[r], k, mask);
      PQV_UNROLL for (int i = 0; i < MR; ++i)
        acc[r][i][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, p.x + (m + i) * K + k), acc[r][i][0]);
    }
  }
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i) {
      __m512 a = acc[r][i][0];
      PQV_UNROLL for (int j = 1; j < J; ++j) a = _mm512_add_ps(a, acc[r][i][j]);
      p.y[(m + i) * p.N + ns[r]] = _mm512_reduce_add_ps(a) + (p.bias ? p.bias[ns[r]] : 0.f);
    }
}

template <bool BF16>
void dense_rows4(const DenseGemv& p, int64_t n0, int64_t n1) {
  rows_in_four_streams(n0, n1, [&](const int64_t* ns) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) dense_row4<4, BF16>(p, m, ns);
    for (; m < p.M; ++m) dense_row4<1, BF16>(p, m, ns);
  }, [&](int64_t n) { dense_rows<BF16>(p, n, n + 1); });
}

}  // namespace

void dense_gemv_avx512(const DenseGemv& p, int64_t n0, int64_t n1) {
  if (p.bf16) dense_rows4<true>(p, n0, n1); else dense_rows4<false>(p, n0, n1);
}

void int8_gemv_avx512(const Int8Gemv& p, int64_t n0, int64_t n1) {
  auto one_row = [&](int64_t n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int8_row<4>(p, m, n);
    for (; m < p.M; ++m) int8_row<1>(p, m, n);
  };
  rows_in_four_streams(n0, n1, [&](const int64_t* ns) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int8_row4<4>(p, m, ns);
    for (; m < p.M; ++m) int8_row4<1>(p, m, ns);
  }, one_row);
}

void int4_gemv_avx512(const Int4Gemv& p, const float* xsum, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int4_row<4>(p, xsum, m, n);
    for (; m < p.M; ++m) int4_row<1>(p, xsum, m, n);
  }
}

namespace {

// 16 values of a K / V row from element d as floats: float32 directly, bf16 bits widened (exact).
inline __m512 load_row16(const float* row, int64_t d) { return _mm512_loadu_ps(row + d); }
inline __m512 load_row16(const uint16_t* row, int64_t d) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + d));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline float row_value(const float* row, int64_t d) { return row[d]; }
inline float row_value(const uint16_t* row, int64_t d) {
  return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(row[d]) << 16))));
}
// The prefetch of element d of a row read 16 elements at a time: one per 64 bytes read.
template <typename T>
inline void prefetch_row(const T* row, int64_t d) {
  if (sizeof(T) == 4 || d % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + d), _MM_HINT_T0);
}

// r[i] = sum of the 16 lanes of a[i]: a transpose-and-add tree, ~3 instructions per sum
// instead of ~8 for a separate horizontal reduction of each vector.
// Always inlined: as a call, its 16 inputs went through the stack (measured ~5% of decode).
inline __attribute__((always_inline)) __m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4];
  PQV_UNROLL for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  PQV_UNROLL for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  const __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xEE));
  const __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xDD));
}

// RB query rows x nj (<= JB) K rows, RB * JB <= 32: one accumulator per dot product over D (each
// q and K vector loaded once per block, not once per dot product), then one reduce16 per 16 of
// them; lane i of the reduced pair (sums[0], sums[1]) is s[i / JB][i % JB].
template <int RB, int JB, typename T>
void scores_block(const float* q, int64_t D, const T* const* k, int64_t nj, float* s, int64_t lds,
                  const T* const* ahead) {
  static_assert(RB * JB <= 32 && JB <= 16, "at most two reduce16 per block");
  constexpr int NA = RB * JB;
  const T* kr[JB];
  PQV_UNROLL for (int j = 0; j < JB; ++j) kr[j] = k[j < nj ? j : 0];           // pad with a valid row, not stored
  __m512 a[32];                                   // a[NA..32) stay zero: the second reduce16's padding
  PQV_UNROLL for (int i = 0; i < 32; ++i) a[i] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d += 16) {
    if (ahead)
      for (int64_t j = 0; j < nj; ++j) prefetch_row(ahead[j], d);
    __m512 kv[JB];
    PQV_UNROLL for (int j = 0; j < JB; ++j) kv[j] = load_row16(kr[j], d);
    PQV_UNROLL for (int r = 0; r < RB; ++r) {
      const __m512 qv = _mm512_loadu_ps(q + r * D + d);
      PQV_UNROLL for (int j = 0; j < JB; ++j) a[r * JB + j] = _mm512_fmadd_ps(qv, kv[j], a[r * JB + j]);
    }
  }
  const __m512 sums[2] = {reduce16(a), NA > 16 ? reduce16(a + 16) : _mm512_setzero_ps()};
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    _mm512_mask_storeu_ps(s + r * lds, static_cast<__mmask16>((1u << nj) - 1),
                          _mm512_permutex2var_ps(sums[0], _mm512_add_epi32(lanes, _mm512_set1_epi32(r * JB)), sums[1]));
}

// Rows [r0, r0 + RB) against all n K rows, JB at a time.
template <int RB, int JB, typename T>
void scores_rows(const float* q, const T* const* k, int64_t n, int64_t D, float* s, int64_t lds,
                 const T* const* ahead) {
  for (int64_t j0 = 0; j0 < n; j0 += JB)
    scores_block<RB, JB, T>(q, D, k + j0, std::min<int64_t>(JB, n - j0), s + j0, lds, ahead ? ahead + j0 : nullptr);
}

// Blocks of 4 rows x 4 K rows; a remainder of 1, 2 or 3 rows takes 16, 8 or 5 K rows per block
// so its reduce16 is (nearly) full. 5-7 rows (the G of Qwen2-VL-2B, Qwen2.5-VL-7B and -32B) take a
// 5- or 6-row block x 4 K rows instead: in one pass, one q load serves 4 FMAs (decode scores per
// position, data in L2: 6 rows 13 ns instead of 19, 7 rows 17 instead of 23; 8 rows stay 4 + 4:
// 6 + 2 and 8 x 2 or 8 x 3 were slower). The first pass over the K rows prefetches `ahead`.
template <typename T>
void scores_avx512(const float* q, int64_t R, const T* const* k, int64_t n, int64_t D, float* s, int64_t lds,
                   const T* const* ahead) {
  switch (R) {
    case 5: return scores_rows<5, 4, T>(q, k, n, D, s, lds, ahead);
    case 6: return scores_rows<6, 4, T>(q, k, n, D, s, lds, ahead);
    case 7:
      scores_rows<6, 4, T>(q, k, n, D, s, lds, ahead);
      return scores_rows<1, 16, T>(q + 6 * D, k, n, D, s + 6 * lds, lds, nullptr);
    default: break;
  }
  const int64_t R4 = R / 4 * 4;
  for (int64_t r0 = 0; r0 < R4; r0 += 4, ahead = nullptr)
    scores_rows<4, 4, T>(q + r0 * D, k, n, D, s + r0 * lds, lds, ahead);
  const float* qr = q + R4 * D;
  float* sr = s + R4 * lds;
  switch (R - R4) {
    case 1: scores_rows<1, 16, T>(qr, k, n, D, sr, lds, ahead); break;
    case 2: scores_rows<2, 8, T>(qr, k, n, D, sr, lds, ahead); break;
    case 3: scores_rows<3, 5, T>(qr, k, n, D, sr, lds, ahead); break;
    default: break;
  }
}

// RB (<= 8) rows x DC (<= 4; <= 3 past 6 rows) 16-float chunks of acc stay in registers over all
// n rows of v, from column d0: each v vector is loaded once per RB rows and each p once per DC
// chunks.
template <int RB, int DC, typename T>
void accumulate_block(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, const T* const* v,
                      int64_t n, int64_t D, int64_t d0, const T* const* ahead) {
  __m512 a[RB][DC];
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    PQV_UNROLL for (int c = 0; c < DC; ++c)
      a[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * D + d0 + 16 * c), _mm512_set1_ps(alpha[r]));
  for (int64_t j = 0; j < n; ++j) {
    if (ahead)
      PQV_UNROLL for (int c = 0; c < DC; ++c) prefetch_row(ahead[j], d0 + 16 * c);
    __m512 vv[DC];
    PQV_UNROLL for (int c = 0; c < DC; ++c) vv[c] = load_row16(v[j], d0 + 16 * c);
    PQV_UNROLL for (int r = 0; r < RB; ++r) {
      const __m512 pv = _mm512_set1_ps(p[r * pr + j * pj]);
      PQV_UNROLL for (int c = 0; c < DC; ++c) a[r][c] = _mm512_fmadd_ps(pv, vv[c], a[r][c]);
    }
  }
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    PQV_UNROLL for (int c = 0; c < DC; ++c) _mm512_storeu_ps(acc + r * D + d0 + 16 * c, a[r][c]);
}

// DC = 4 chunks per block up to 6 rows, 3 for 7 or 8 (RB * DC accumulators + DC v vectors + a
// broadcast within the 32 registers).
template <int RB, typename T>
void accumulate_rows(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, const T* const* v,
                     int64_t n, int64_t D, const T* const* ahead) {
  constexpr int64_t kMaxDC = RB <= 6 ? 4 : 3;
  for (int64_t d0 = 0; d0 < D; d0 += 16 * kMaxDC) {
    switch (std::min<int64_t>(kMaxDC, (D - d0) / 16)) {
      case 1: accumulate_block<RB, 1, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      case 2: accumulate_block<RB, 2, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      case 3: accumulate_block<RB, 3, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      default: accumulate_block<RB, kMaxDC, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
    }
  }
}

// Rows in ceil(R / 8) groups of near-equal size (9 rows: 5 + 4, not 8 + 1: a 1-row pass loads a
// v vector per FMA); the first group's pass over v prefetches `ahead`.
template <typename T>
void accumulate_avx512(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, int64_t R,
                       const T* const* v, int64_t n, int64_t D, const T* const* ahead) {
  using Fn = void (*)(float*, const float*, const float*, int64_t, int64_t, const T* const*, int64_t, int64_t,
                      const T* const*);
  static const Fn by_rows[8] = {accumulate_rows<1, T>, accumulate_rows<2, T>, accumulate_rows<3, T>,
                                accumulate_rows<4, T>, accumulate_rows<5, T>, accumulate_rows<6, T>,
                                accumulate_rows<7, T>, accumulate_rows<8, T>};
  const int64_t groups = (R + 7) / 8;
  for (int64_t g = 0, r0 = 0; g < groups; ++g, ahead = nullptr) {
    const int64_t r1 = R * (g + 1) / groups;
    by_rows[r1 - r0 - 1](acc + r0 * D, alpha + r0, p + r0 * pr, pr, pj, v, n, D, ahead);
    r0 = r1;
  }
}

// Up to 6 K rows x RV vectors (16 query rows each) of st: per d one broadcast of each k[j][d]
// and one load of each qt vector feed 6 * RV FMAs; no horizontal sums.
template <int RV, typename T>
void scores_t_block(const float* qt, int64_t Rp, const T* const* k, int64_t nj, int64_t D, float* st) {
  const T* kr[6];
  PQV_UNROLL for (int j = 0; j < 6; ++j) kr[j] = k[j < nj ? j : 0];            // pad with a valid row, not stored
  __m512 a[6][RV];
  PQV_UNROLL for (int j = 0; j < 6; ++j)
    PQV_UNROLL for (int v = 0; v < RV; ++v) a[j][v] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 qv[RV];
    PQV_UNROLL for (int v = 0; v < RV; ++v) qv[v] = _mm512_loadu_ps(qt + d * Rp + 16 * v);
    PQV_UNROLL for (int j = 0; j < 6; ++j) {
      const __m512 kb = _mm512_set1_ps(row_value(kr[j], d));
      PQV_UNROLL for (int v = 0; v < RV; ++v) a[j][v] = _mm512_fmadd_ps(kb, qv[v], a[j][v]);
    }
  }
  PQV_UNROLL for (int j = 0; j < nj; ++j)
    PQV_UNROLL for (int v = 0; v < RV; ++v) _mm512_storeu_ps(st + j * Rp + 16 * v, a[j][v]);
}

template <typename T>
void scores_t_avx512(const float* qt, int64_t Rp, const T* const* k, int64_t n, int64_t D, float* st) {
  using Fn = void (*)(const float*, int64_t, const T* const*, int64_t, int64_t, float*);
  static const Fn by_vectors[4] = {scores_t_block<1, T>, scores_t_block<2, T>, scores_t_block<3, T>,
                                   scores_t_block<4, T>};
  for (int64_t j0 = 0; j0 < n; j0 += 6)
    for (int64_t r0 = 0; r0 < Rp; r0 += 64)
      by_vectors[std::min<int64_t>(4, (Rp - r0) / 16) - 1](qt + r0, Rp, k + j0, std::min<int64_t>(6, n - j0), D,
                                                           st + j0 * Rp + r0);
}

// exp with a degree-6 polynomial on [-ln2/2, ln2/2] and scalef for 2^n (rel. error ~2e-7).
__m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 y = _mm512_set1_ps(1.f / 720);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 120));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 24));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(y, n);
}

float softmax_step_avx512(float* s, int64_t n, float* m, float* l) {
  const __mmask16 m0 = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
  const __mmask16 m1 = n <= 16 ? 0 : n >= 32 ? 0xFFFF : static_cast<__mmask16>((1u << (n - 16)) - 1);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 s0 = _mm512_mask_loadu_ps(ninf, m0, s), s1 = _mm512_mask_loadu_ps(ninf, m1, s + 16);
  const float new_m = std::max(*m, _mm512_reduce_max_ps(_mm512_max_ps(s0, s1)));
  const __m512 mv = _mm512_set1_ps(new_m);
  const __m512 e0 = _mm512_maskz_mov_ps(m0, exp512(_mm512_sub_ps(s0, mv)));
  const __m512 e1 = _mm512_maskz_mov_ps(m1, exp512(_mm512_sub_ps(s1, mv)));
  _mm512_mask_storeu_ps(s, m0, e0);
  _mm512_mask_storeu_ps(s + 16, m1, e1);
  // 0 on the first chunk (m = -inf); 1 when the max did not move (most chunks of a long row):
  // skipping the scalar exp there took ~20% off the decode softmax
  const float alpha = new_m == *m ? 1.f : std::exp(*m - new_m);
  *l = *l * alpha + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
  *m = new_m;
  return alpha;
}

void softmax_t_avx512(float* st, int64_t n, int64_t Rp, const int32_t* valid, float* m, float* l, float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r0 = 0; r0 < Rp; r0 += 16) {
    const __m512i seen = _mm512_loadu_si512(valid + r0);
    const __m512 old_m = _mm512_loadu_ps(m + r0);
    __m512 new_m = old_m;
    for (int64_t j = 0; j < n; ++j)
      new_m = _mm512_mask_max_ps(new_m, _mm512_cmpgt_epi32_mask(seen, _mm512_set1_epi32(j)), new_m,
                                 _mm512_loadu_ps(st + j * Rp + r0));
    // a column that has seen nothing yet keeps m = -inf; exponentiate against 0 there (all masked)
    const __m512 base = _mm512_mask_mov_ps(new_m, _mm512_cmp_ps_mask(new_m, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
    const __m512 al = exp512(_mm512_sub_ps(old_m, base));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const __m512 e = _mm512_maskz_mov_ps(_mm512_cmpgt_epi32_mask(seen, _mm512_set1_epi32(j)),
                                           exp512(_mm512_sub_ps(_mm512_loadu_ps(st + j * Rp + r0), base)));
      _mm512_storeu_ps(st + j * Rp + r0, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_storeu_ps(l + r0, _mm512_fmadd_ps(_mm512_loadu_ps(l + r0), al, sum));
    _mm512_storeu_ps(m + r0, new_m);
    _mm512_storeu_ps(alpha + r0, al);
  }
}

float sum_squares(const float* x, int64_t H) {
  __m512 a = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= H; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i), a);
  float s = _mm512_reduce_add_ps(a);
  for (; i < H; ++i) s += x[i] * x[i];
  return s;
}

void scale_by_weight(const float* x, const float* w, float inv, float* out, int64_t H) {
  const __m512 iv = _mm512_set1_ps(inv);
  int64_t i = 0;
  for (; i + 16 <= H; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), iv), _mm512_loadu_ps(w + i)));
  for (; i < H; ++i) out[i] = x[i] * inv * w[i];
}

void rms_norm_avx512(const float* x, const float* w, float* out, int64_t H, float eps) {
  scale_by_weight(x, w, 1.f / std::sqrt(sum_squares(x, H) / H + eps), out, H);
}

void add_rms_norm_avx512(const float* x, const float* res, const float* w, float* out, float* res_out, int64_t H,
                         float eps) {
  int64_t i = 0;
  for (; i + 16 <= H; i += 16) _mm512_storeu_ps(res_out + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(res + i)));
  for (; i < H; ++i) res_out[i] = x[i] + res[i];
  rms_norm_avx512(res_out, w, out, H, eps);
}

// Two passes over the row (it stays in L1): the mean, then the variance around it (no
// cancellation as in E[x^2] - E[x]^2), then the normalised, scaled and shifted row.
void layer_norm_avx512(const float* x, const float* w, const float* b, float* out, int64_t H, float eps) {
  __m512 a = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= H; i += 16) a = _mm512_add_ps(a, _mm512_loadu_ps(x + i));
  float sum = _mm512_reduce_add_ps(a);
  for (; i < H; ++i) sum += x[i];
  const float mean = sum / H;
  const __m512 mv = _mm512_set1_ps(mean);
  a = _mm512_setzero_ps();
  for (i = 0; i + 16 <= H; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
    a = _mm512_fmadd_ps(d, d, a);
  }
  float ss = _mm512_reduce_add_ps(a);
  for (; i < H; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(ss / H + eps);
  const __m512 iv = _mm512_set1_ps(inv);
  for (i = 0; i + 16 <= H; i += 16) {
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), iv);
    _mm512_storeu_ps(out + i, _mm512_fmadd_ps(d, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
  }
  for (; i < H; ++i) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

void silu_mul_avx512(const float* g, const float* u, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 gv = _mm512_loadu_ps(g + i);
    const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(gv, sig), _mm512_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void quick_gelu_avx512(const float* x, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f), a = _mm512_set1_ps(-1.702f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i);
    _mm512_storeu_ps(out + i, _mm512_div_ps(xv, _mm512_add_ps(one, exp512(_mm512_mul_ps(a, xv)))));
  }
  for (; i < n; ++i) out[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
}


// Two passes: the max, then exp, sum and store (16 floats at a time, the tail masked). bf16
// numerators take the cheaper exp and AVX512-BF16's rounding (callers only ask with native bf16).
template <bool BF16>
float softmax_row(const float* s, int64_t n, float scale, float* m_io, void* out) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mx = ninf;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, m, s + j));
  }
  *m_io = std::max(*m_io, _mm512_reduce_max_ps(mx));
  const __m512 sc = _mm512_set1_ps(scale), base = _mm512_set1_ps(scale * *m_io);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 x = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, s + j), sc, base);
    const __m512 e = _mm512_maskz_mov_ps(m, BF16 ? exp512_for_bf16(x) : exp512(x));
    sum = _mm512_add_ps(sum, e);
    if constexpr (BF16)
      _mm256_mask_storeu_epi16(static_cast<uint16_t*>(out) + j, m, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e)));
    else
      _mm512_mask_storeu_ps(static_cast<float*>(out) + j, m, e);
  }
  return _mm512_reduce_add_ps(sum);
}

float softmax_row_avx512(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb) {
  return p ? softmax_row<false>(s, n, scale, m, p) : softmax_row<true>(s, n, scale, m, pb);
}

}  // namespace

const RowKernels kRowAvx512 = {rms_norm_avx512, add_rms_norm_avx512, silu_mul_avx512, quick_gelu_avx512,
                               softmax_row_avx512, layer_norm_avx512};

const AttnKernels kAttnAvx512 = {scores_avx512<float>, softmax_step_avx512, scores_t_avx512<float>,
                                 softmax_t_avx512, accumulate_avx512<float>};
const AttnKernelsBf16 kAttnAvx512Bf16 = {scores_avx512<uint16_t>, softmax_step_avx512, scores_t_avx512<uint16_t>,
                                         softmax_t_avx512, accumulate_avx512<uint16_t>};

float sum_avx512(const float* p, int64_t n, int streams) {
  // `streams` equal parts read side by side, each prefetched 1 KB ahead when there are several:
  // more misses in flight than one sequential stream gets from the hardware prefetcher (on the
  // 2026-12-01 Intel machine, 2 threads: 1 stream ~20 GB/s, 4 streams + prefetch ~29-31).
  __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  const int64_t per = n / streams / 64 * 64;
  for (int64_t k = 0; k < per; k += 64)
    for (int s = 0; s < streams; ++s) {
      const float* q = p + s * per + k;
      if (streams > 1)
        for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(q + 256 + 16 * j), _MM_HINT_T0);
      for (int j = 0; j < 4; ++j) a[j] = _mm512_add_ps(a[j], _mm512_loadu_ps(q + 16 * j));
    }
  float s = reduce4(a);
  for (int64_t k = per * streams; k < n; ++k) s += p[k];
  return s;
}

}  // namespace pqv
