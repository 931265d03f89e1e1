// Weight-only int8 / int4 decode GEMVs (gemv.h) on AVX512 with fp32 activations: the exact path
// (each weight converted to fp32; compute-bound below DRAM speed, see weight_only_vnni.cc for the
// default). The pragma makes the compiler emit AVX512 for this file only; callers check
// pqv::Exec::avx512() first. No Paddle headers here, so nothing else is built for AVX512.
// int8: 4 weight rows at a time, one from each quarter of the thread's range (rows_in_four_streams
// in gemv.h); int4: one row at a time.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "gemv/gemv.h"
#include "simd_avx512.h"

namespace pqv {
namespace {

inline __m512 load_i8x16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
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

// MR activation rows against the 4 int8 weight rows ns (rows_in_four_streams in gemv.h); one
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

}  // namespace pqv
