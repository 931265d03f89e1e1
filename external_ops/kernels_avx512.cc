// AVX512 kernels that keep activations in fp32. The pragma makes the compiler emit AVX512 for
// this file only; callers check pqv::has_avx512() first. No Paddle headers here, so nothing else
// is built for AVX512.
//
// GEMVs walk one weight row at a time: a single sequential stream per thread is what the
// hardware prefetcher follows at full DRAM speed (4 interleaved row streams got ~60% of it).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")
#include <immintrin.h>

#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

// r[i] = sum of the 16 lanes of a[i]: a transpose-and-add tree, ~3 instructions per sum
// instead of ~8 for a separate horizontal reduction of each vector.
__m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4];
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  const __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xEE));
  const __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xDD));
}

// N rows known at compile time (16 for every full group) so the row loop fully unrolls.
template <int N>
void scores_rows(const float* q, int64_t G, const float* const* k, int64_t D, float* s, int64_t lds, int64_t n) {
  for (int64_t g = 0; g < G; ++g) {
    __m512 a[16];
    for (int j = 0; j < 16; ++j) a[j] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 qv = _mm512_loadu_ps(q + g * D + d);
      for (int j = 0; j < N; ++j) a[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k[j] + d), a[j]);
    }
    _mm512_mask_storeu_ps(s + g * lds, static_cast<__mmask16>((1u << n) - 1), reduce16(a));
  }
}

void scores_avx512(const float* q, int64_t G, const float* const* k, int64_t n, int64_t D, float* s, int64_t lds) {
  if (n == 16) return scores_rows<16>(q, G, k, D, s, lds, n);
  const float* rows[16];
  for (int j = 0; j < 16; ++j) rows[j] = k[j < n ? j : 0];     // pad with a valid row, masked off
  scores_rows<16>(q, G, rows, D, s, lds, n);
}

template <int GB>
void accumulate_heads(float* acc, const float* alpha, const float* p, int64_t ldp, int64_t n,
                      const float* const* v, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) {
    __m512 a[GB];
    for (int g = 0; g < GB; ++g) a[g] = _mm512_mul_ps(_mm512_loadu_ps(acc + g * D + d), _mm512_set1_ps(alpha[g]));
    for (int64_t j = 0; j < n; ++j) {
      const __m512 vv = _mm512_loadu_ps(v[j] + d);
      for (int g = 0; g < GB; ++g) a[g] = _mm512_fmadd_ps(_mm512_set1_ps(p[g * ldp + j]), vv, a[g]);
    }
    for (int g = 0; g < GB; ++g) _mm512_storeu_ps(acc + g * D + d, a[g]);
  }
}

// D % 16 == 0 (checked by the caller); heads in groups of up to 8 with the group size a
// compile-time constant, so each head's accumulator stays in a register.
void accumulate_avx512(float* acc, const float* alpha, const float* p, int64_t ldp, int64_t n, int64_t G,
                       const float* const* v, int64_t D) {
  using Fn = void (*)(float*, const float*, const float*, int64_t, int64_t, const float* const*, int64_t);
  static const Fn by_size[9] = {nullptr, accumulate_heads<1>, accumulate_heads<2>, accumulate_heads<3>,
                                accumulate_heads<4>, accumulate_heads<5>, accumulate_heads<6>,
                                accumulate_heads<7>, accumulate_heads<8>};
  for (int64_t g0 = 0; g0 < G; g0 += 8)
    by_size[std::min<int64_t>(8, G - g0)](acc + g0 * D, alpha + g0, p + g0 * ldp, ldp, n, v, D);
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
  const float alpha = std::exp(*m - new_m);                  // 0 on the first chunk (m = -inf)
  *l = *l * alpha + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
  *m = new_m;
  return alpha;
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

}  // namespace

const RowKernels kRowAvx512 = {rms_norm_avx512, add_rms_norm_avx512, silu_mul_avx512};

const AttnKernels kAttnAvx512 = {scores_avx512, accumulate_avx512, softmax_step_avx512};

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
