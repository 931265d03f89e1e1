// AVX512 kernels that keep activations in fp32. The pragma makes the compiler emit AVX512 for
// this file only; callers check pqv::has_avx512() first. No Paddle headers here, so nothing else
// is built for AVX512.
//
// GEMVs walk one weight row at a time: a single sequential stream per thread is what the
// hardware prefetcher follows at full DRAM speed (4 interleaved row streams got ~60% of it).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")
#include <immintrin.h>

#include "kernels.h"

namespace pqv {
namespace {

constexpr int64_t kPrefetch = 1024;   // bytes ahead in the weight stream

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
    _mm_prefetch(reinterpret_cast<const char*>(w + k + kPrefetch), _MM_HINT_T0);
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
      _mm_prefetch(reinterpret_cast<const char*>(wr + k / 2 + kPrefetch), _MM_HINT_T0);
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
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int8_row<4>(p, m, n);
    for (; m < p.M; ++m) int8_row<1>(p, m, n);
  }
}

void int4_gemv_avx512(const Int4Gemv& p, const float* xsum, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int4_row<4>(p, xsum, m, n);
    for (; m < p.M; ++m) int4_row<1>(p, xsum, m, n);
  }
}

float dot_avx512(const float* a, const float* b, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= d; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc);
  float s = _mm512_reduce_add_ps(acc);
  for (; k < d; ++k) s += a[k] * b[k];
  return s;
}

void axpy_avx512(float* acc, const float* v, float w, int64_t d) {
  const __m512 wv = _mm512_set1_ps(w);
  int64_t k = 0;
  for (; k + 16 <= d; k += 16)
    _mm512_storeu_ps(acc + k, _mm512_fmadd_ps(wv, _mm512_loadu_ps(v + k), _mm512_loadu_ps(acc + k)));
  for (; k < d; ++k) acc[k] += w * v[k];
}

float sum_avx512(const float* p, int64_t n) {
  __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t k = 0;
  for (; k + 64 <= n; k += 64)
    for (int j = 0; j < 4; ++j) a[j] = _mm512_add_ps(a[j], _mm512_loadu_ps(p + k + 16 * j));
  float s = reduce4(a);
  for (; k < n; ++k) s += p[k];
  return s;
}

}  // namespace pqv
