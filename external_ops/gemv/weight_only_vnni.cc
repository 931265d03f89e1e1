// Weight-only int8 / int4 decode GEMVs (gemv.h) on AVX512-VNNI, the default decode path: x is
// quantized to int8 per block (|error| <= block max / 254), so results differ from dequantized fp32
// math by that much; in exchange one vpdpbusd does 64 multiply-adds and the GEMV keeps up with DRAM.
// int8 (any M) and int4 (M = 1) read 4 weight rows at a time, one from each quarter of the
// thread's range (rows_in_four_streams in gemv.h); int4 with M > 1 one row at a time.
// Compiled for AVX512 by the pragma; callers check pqv::Exec::avx512() (which includes VNNI).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")
#include <immintrin.h>

#include <cmath>

#include "gemv/gemv.h"

namespace pqv {
namespace {

// int8 weights: u = w ^ 0x80 = w + 128 (unsigned), so vpdpbusd(u, xq) = sum xq*w + 128*sum(xq).
template <int MR>
inline void int8_row(const Int8Gemv& p, const QuantX& xq, int64_t m, int64_t n) {
  const int64_t K = p.K, B = K / 64;
  const int8_t* w = p.w + n * K;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  // Two accumulators per row, indexed by constants: an index computed from the loop counter
  // (b & 1) kept them in memory and cost ~25% of the in-cache speed.
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  auto block = [&](int64_t b, __m512* acc) {
    _mm_prefetch(reinterpret_cast<const char*>(w + b * 64 + kWeightsAhead), _MM_HINT_T0);
    const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(w + b * 64), flip);
    for (int i = 0; i < MR; ++i) {
      const __m512i x = _mm512_loadu_si512(xq.q + (m + i) * K + b * 64);
      const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
      const __m512 s = _mm512_set1_ps(xq.scale[(m + i) * B + b]);
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc[i]);
    }
  };
  int64_t b = 0;
  for (; b + 2 <= B; b += 2) {
    block(b, acc0);
    block(b + 1, acc1);
  }
  if (b < B) block(b, acc0);
  for (int i = 0; i < MR; ++i) {
    const float dot = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i])) - 128.f * xq.off_total[m + i];
    p.y[(m + i) * p.N + n] = dot * p.scales[n] + (p.bias ? p.bias[n] : 0.f);
  }
}

// MR activation rows against the 4 int8 weight rows ns (rows_in_four_streams in gemv.h).
template <int MR>
inline void int8_row4(const Int8Gemv& p, const QuantX& xq, int64_t m, const int64_t* ns) {
  const int64_t K = p.K, B = K / 64;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const int8_t* w[4];
  __m512 acc[4][MR];
  for (int r = 0; r < 4; ++r) {
    w[r] = p.w + ns[r] * K;
    for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < B; ++b) {
    __m512i u[4];
    for (int r = 0; r < 4; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + b * 64 + kWeightsAhead / 4), _MM_HINT_T0);
      u[r] = _mm512_xor_si512(_mm512_loadu_si512(w[r] + b * 64), flip);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i x = _mm512_loadu_si512(xq.q + (m + i) * K + b * 64);
      const __m512 s = _mm512_set1_ps(xq.scale[(m + i) * B + b]);
      for (int r = 0; r < 4; ++r)
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u[r], x)), s, acc[r][i]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < MR; ++i)
      p.y[(m + i) * p.N + ns[r]] = (_mm512_reduce_add_ps(acc[r][i]) - 128.f * xq.off_total[m + i]) * p.scales[ns[r]] +
                                   (p.bias ? p.bias[ns[r]] : 0.f);
}

// sum_i a[i] * b[i] over n floats (int4 rows: the weight scales against x's block offsets).
inline float dot(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// int4 weights are stored as q + 8 in [0, 15], already unsigned: sum xq*(q+8) = sum xq*q + 8*sum(xq),
// so each row subtracts 8 * sum_g scale_g * off_g once, after its loop (inside it, that scalar sum
// was a dependency chain of one FMA per group and capped the in-cache speed).
// Group 128: 64 packed bytes per group; low nibbles pair with the permuted x's first 64 bytes.
// Group 64: the same with 32 packed bytes per group in 256-bit registers.
template <int MR>
inline void int4_row_g128(const Int4Gemv& p, const QuantX& xq, int64_t m, int64_t n) {
  const int64_t K = p.K, G = K / 128;
  const uint8_t* w = p.w + n * (K / 2);
  const float* ws = p.scales + n * G;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  auto group = [&](int64_t g, __m512* acc) {
    _mm_prefetch(reinterpret_cast<const char*>(w + g * 64 + kWeightsAhead / 2), _MM_HINT_T0);
    const __m512i raw = _mm512_loadu_si512(w + g * 64);
    const __m512i lo = _mm512_and_si512(raw, mask);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
    for (int i = 0; i < MR; ++i) {
      const int8_t* x = xq.q + (m + i) * K + g * 128;
      __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(x));
      d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(x + 64));
      const __m512 s = _mm512_set1_ps(ws[g] * xq.scale[(m + i) * G + g]);
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc[i]);
    }
  };
  int64_t g = 0;
  for (; g + 2 <= G; g += 2) {
    group(g, acc0);
    group(g + 1, acc1);
  }
  if (g < G) group(g, acc0);
  for (int i = 0; i < MR; ++i)
    p.y[(m + i) * p.N + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i])) -
                             8.f * dot(ws, xq.off + (m + i) * G, G) + (p.bias ? p.bias[n] : 0.f);
}

// M = 1, group 128, against the 4 int4 weight rows ns (rows_in_four_streams in gemv.h).
inline void int4_row4_g128(const Int4Gemv& p, const QuantX& xq, const int64_t* ns) {
  const int64_t K = p.K, G = K / 128;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  const uint8_t* w[4];
  const float* ws[4];
  __m512 acc[4];
  for (int r = 0; r < 4; ++r) {
    w[r] = p.w + ns[r] * (K / 2);
    ws[r] = p.scales + ns[r] * G;
    acc[r] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < G; ++g) {
    const __m512i x0 = _mm512_loadu_si512(xq.q + g * 128), x1 = _mm512_loadu_si512(xq.q + g * 128 + 64);
    for (int r = 0; r < 4; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + g * 64 + kWeightsAhead / 8), _MM_HINT_T0);
      const __m512i raw = _mm512_loadu_si512(w[r] + g * 64);
      __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(raw, mask), x0);
      d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask), x1);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(ws[r][g] * xq.scale[g]), acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r)
    p.y[ns[r]] = _mm512_reduce_add_ps(acc[r]) - 8.f * dot(ws[r], xq.off, G) + (p.bias ? p.bias[ns[r]] : 0.f);
}

// M = 1, group 64 (256-bit, 32 packed bytes per group), against the 4 int4 weight rows ns.
inline void int4_row4_g64(const Int4Gemv& p, const QuantX& xq, const int64_t* ns) {
  const int64_t K = p.K, G = K / 64;
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const uint8_t* w[4];
  const float* ws[4];
  __m256 acc[4];
  for (int r = 0; r < 4; ++r) {
    w[r] = p.w + ns[r] * (K / 2);
    ws[r] = p.scales + ns[r] * G;
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < G; ++g) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq.q + g * 64));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq.q + g * 64 + 32));
    for (int r = 0; r < 4; ++r) {
      if (g % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(w[r] + g * 32 + kWeightsAhead / 8), _MM_HINT_T0);
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r] + g * 32));
      __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(raw, mask), x0);
      d = _mm256_dpbusd_epi32(d, _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask), x1);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(ws[r][g] * xq.scale[g]), acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    const float sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
    p.y[ns[r]] = sum - 8.f * dot(ws[r], xq.off, G) + (p.bias ? p.bias[ns[r]] : 0.f);
  }
}

template <int MR>
inline void int4_row_g64(const Int4Gemv& p, const QuantX& xq, int64_t m, int64_t n) {
  const int64_t K = p.K, G = K / 64;
  const uint8_t* w = p.w + n * (K / 2);
  const float* ws = p.scales + n * G;
  const __m256i mask = _mm256_set1_epi8(0x0F);
  __m256 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  auto group = [&](int64_t g, __m256* acc) {
    if (g % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + g * 32 + kWeightsAhead / 2), _MM_HINT_T0);
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g * 32));
    const __m256i lo = _mm256_and_si256(raw, mask);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
    for (int i = 0; i < MR; ++i) {
      const int8_t* x = xq.q + (m + i) * K + g * 64;
      __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
      d = _mm256_dpbusd_epi32(d, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
      const __m256 s = _mm256_set1_ps(ws[g] * xq.scale[(m + i) * G + g]);
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, acc[i]);
    }
  };
  int64_t g = 0;
  for (; g + 2 <= G; g += 2) {
    group(g, acc0);
    group(g + 1, acc1);
  }
  if (g < G) group(g, acc0);
  for (int i = 0; i < MR; ++i) {
    const __m256 a = _mm256_add_ps(acc0[i], acc1[i]);
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    const float sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
    p.y[(m + i) * p.N + n] = sum - 8.f * dot(ws, xq.off + (m + i) * G, G) + (p.bias ? p.bias[n] : 0.f);
  }
}

}  // namespace

// One block of `block` (a multiple of 16) floats -> int8 with round-to-nearest-even; returns
// the block's scale and writes scale * sum(q) to *off.
inline float quantize_block(const float* x, int64_t block, int8_t* q, float* off) {
  __m512 amax = _mm512_setzero_ps();
  for (int64_t k = 0; k < block; k += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
  const float mx = _mm512_reduce_max_ps(amax);
  const __m512 inv = _mm512_set1_ps(mx > 0.f ? 127.f / mx : 0.f);
  __m512i total = _mm512_setzero_si512();
  for (int64_t k = 0; k < block; k += 16) {
    const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), inv));
    total = _mm512_add_epi32(total, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtsepi32_epi8(v));
  }
  const float scale = mx / 127.f;
  *off = scale * static_cast<float>(_mm512_reduce_add_epi32(total));
  return scale;
}

void quantize_x_blocks(const float* x, int64_t M, int64_t K, int64_t block, bool permute, int8_t* q,
                       float* scale, float* off, float* off_total) {
  const int64_t B = K / block;
  int8_t tmp[256];
  for (int64_t m = 0; m < M; ++m) {
    off_total[m] = 0.f;
    for (int64_t b = 0; b < B; ++b) {
      int8_t* dst = q + m * K + b * block;
      const int64_t i = m * B + b;
      scale[i] = quantize_block(x + m * K + b * block, block, permute ? tmp : dst, &off[i]);
      if (permute)                                             // [even k | odd k]
        for (int64_t k = 0; k < block; ++k) dst[(k % 2) * (block / 2) + k / 2] = tmp[k];
      off_total[m] += off[i];
    }
  }
}

void int8_gemv_vnni(const Int8Gemv& p, const QuantX& xq, int64_t n0, int64_t n1) {
  auto one_row = [&](int64_t n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int8_row<4>(p, xq, m, n);
    for (; m < p.M; ++m) int8_row<1>(p, xq, m, n);
  };
  rows_in_four_streams(n0, n1, [&](const int64_t* ns) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) int8_row4<4>(p, xq, m, ns);
    for (; m < p.M; ++m) int8_row4<1>(p, xq, m, ns);
  }, one_row);
}

void int4_gemv_vnni(const Int4Gemv& p, const QuantX& xq, int64_t n0, int64_t n1) {
  if (p.M == 1 && p.group == 128)
    return rows_in_four_streams(n0, n1, [&](const int64_t* ns) { int4_row4_g128(p, xq, ns); },
                                [&](int64_t n) { int4_row_g128<1>(p, xq, 0, n); });
  if (p.M == 1 && p.group == 64)
    return rows_in_four_streams(n0, n1, [&](const int64_t* ns) { int4_row4_g64(p, xq, ns); },
                                [&](int64_t n) { int4_row_g64<1>(p, xq, 0, n); });
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    if (p.group == 128) {
      for (; m + 4 <= p.M; m += 4) int4_row_g128<4>(p, xq, m, n);
      for (; m < p.M; ++m) int4_row_g128<1>(p, xq, m, n);
    } else {
      for (; m + 4 <= p.M; m += 4) int4_row_g64<4>(p, xq, m, n);
      for (; m < p.M; ++m) int4_row_g64<1>(p, xq, m, n);
    }
  }
}

}  // namespace pqv
