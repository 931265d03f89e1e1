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

namespace {

void scores_avx512(const float* q, int64_t G, const float* k, int64_t D, float* out) {
  int64_t g = 0;
  for (; g + 2 <= G; g += 2) {   // two heads per pass: each k load feeds two FMAs
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
      const __m512 kv = _mm512_loadu_ps(k + d);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * D + d), kv, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + (g + 1) * D + d), kv, a1);
    }
    float s0 = _mm512_reduce_add_ps(a0), s1 = _mm512_reduce_add_ps(a1);
    for (; d < D; ++d) s0 += q[g * D + d] * k[d], s1 += q[(g + 1) * D + d] * k[d];
    out[g] = s0, out[g + 1] = s1;
  }
  for (; g < G; ++g) {
    __m512 a0 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * D + d), _mm512_loadu_ps(k + d), a0);
    float s0 = _mm512_reduce_add_ps(a0);
    for (; d < D; ++d) s0 += q[g * D + d] * k[d];
    out[g] = s0;
  }
}

void accumulate_avx512(float* acc, const float* p, int64_t G, const float* v, int64_t D) {
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) {
    const __m512 vv = _mm512_loadu_ps(v + d);
    for (int64_t g = 0; g < G; ++g)
      _mm512_storeu_ps(acc + g * D + d, _mm512_fmadd_ps(_mm512_set1_ps(p[g]), vv, _mm512_loadu_ps(acc + g * D + d)));
  }
  for (; d < D; ++d)
    for (int64_t g = 0; g < G; ++g) acc[g * D + d] += p[g] * v[d];
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

void exp_inplace_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, exp512(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

const AttnKernels kAttnAvx512 = {scores_avx512, accumulate_avx512, exp_inplace_avx512};

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
