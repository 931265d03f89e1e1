// The compute probe's loops (dot_peak.h). The pragma makes the compiler emit AVX512 for this file
// only. The empty asm keeps each operand in a register the compiler cannot see through, so the
// chains are neither folded nor hoisted; the results are returned so they are not dropped.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "info/dot_peak.h"

namespace pqv {

int32_t vnni_dots_avx512(int64_t iters) {
  __m512i acc[kDotChains];
  for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_set1_epi32(i);
  __m512i w = _mm512_set1_epi8(3), x = _mm512_set1_epi8(5);
  for (int64_t k = 0; k < iters; ++k) {
    for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], w, x);
    __asm__ volatile("" : "+v"(w), "+v"(x));
  }
  __m512i s = acc[0];
  for (int i = 1; i < kDotChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  return _mm512_reduce_add_epi32(s);
}

float bf16_dots_avx512(int64_t iters) {
  __m512 acc[kDotChains];
  for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512bh w = (__m512bh)_mm512_set1_epi16(0x3F80), x = (__m512bh)_mm512_set1_epi16(0x3A80);  // 1.0, ~1e-3
  for (int64_t k = 0; k < iters; ++k) {
    for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], w, x);
    __asm__ volatile("" : "+v"(w), "+v"(x));
  }
  __m512 s = acc[0];
  for (int i = 1; i < kDotChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace pqv
