// The compute probe's loops (dot_peak.h). The pragma makes the compiler emit AVX512 for this file
// only. The results are returned so no chain is dropped.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "info/dot_peak.h"

namespace pqv {

namespace {

// `iters` rounds of kDotChains independent acc[i] = op(acc[i], w, x), each acc[i] starting at
// `zero`; the accumulators summed at the end by op(a, b). The empty asm hides w and x from the
// compiler anew each round.
template <typename Acc, typename Src, typename Op>
Acc chains(int64_t iters, Acc zero, Src w, Src x, Op op) {
  Acc acc[kDotChains];
  for (int i = 0; i < kDotChains; ++i) acc[i] = zero;
  for (int64_t k = 0; k < iters; ++k) {
    for (int i = 0; i < kDotChains; ++i) acc[i] = op(acc[i], w, x);
    __asm__ volatile("" : "+v"(w), "+v"(x));
  }
  Acc s = acc[0];
  for (int i = 1; i < kDotChains; ++i) s = op(s, acc[i]);
  return s;
}

struct Vnni {          // 64 u8 x s8 multiply-adds into 16 int32 lanes
  __m512i operator()(__m512i a, __m512i w, __m512i x) const { return _mm512_dpbusd_epi32(a, w, x); }
  __m512i operator()(__m512i a, __m512i b) const { return _mm512_add_epi32(a, b); }
};

struct Bf16 {          // 32 bf16 multiply-adds into 16 fp32 lanes
  __m512 operator()(__m512 a, __m512bh w, __m512bh x) const { return _mm512_dpbf16_ps(a, w, x); }
  __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};

}  // namespace

int32_t vnni_dots_avx512(int64_t iters) {
  return _mm512_reduce_add_epi32(
      chains(iters, _mm512_setzero_si512(), _mm512_set1_epi8(3), _mm512_set1_epi8(5), Vnni{}));
}

float bf16_dots_avx512(int64_t iters) {
  const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3F80), small = (__m512bh)_mm512_set1_epi16(0x3A80);  // 1, 2^-10
  return _mm512_reduce_add_ps(chains(iters, _mm512_setzero_ps(), one, small, Bf16{}));
}

}  // namespace pqv
