// The GEMM attention engine's row softmax (attention_kernels.h: softmax_row_avx512) on AVX512.
// The pragma makes the compiler emit AVX512 for this file only; callers check pqv::Exec::avx512()
// first, and fast_bf16() before asking for bf16 output. No Paddle headers here.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "attention/attention_kernels.h"
#include "simd_avx512.h"

namespace pqv {
namespace {

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

}  // namespace

float softmax_row_avx512(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb) {
  return p ? softmax_row<false>(s, n, scale, m, p) : softmax_row<true>(s, n, scale, m, pb);
}

}  // namespace pqv
