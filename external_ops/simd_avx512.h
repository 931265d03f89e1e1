// AVX512 helpers shared by the files compiled for AVX512 (gemv/, attention/, elementwise/ and
// info/ *_avx512.cc, attention/block_amx.cc): include only after their `#pragma GCC target`.
// Everything here has internal linkage (an anonymous namespace): each file keeps its own copy,
// compiled for its own instruction sets, and no copy is shared with a file built for others.
#pragma once
#include <immintrin.h>

#include <cstdint>

// Fully unrolls a loop over a register block. Without it GCC kept the block's accumulator arrays
// (e.g. 16 __m512) in memory around the loops (a memset to zero them, spills before reduce16):
// the decode scores ran at 70% of the speed they have with it.
#define PQV_UNROLL _Pragma("GCC unroll 16")

namespace pqv {
namespace {

// The sum of all lanes of four vectors.
inline float reduce4(const __m512 a[4]) {
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}

// exp with a degree-6 polynomial on [-ln2/2, ln2/2] and scalef for 2^n (rel. error ~2e-7).
inline __m512 exp512(__m512 x) {
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

// exp(x) to bf16 accuracy: degree-4 polynomial (rel. error ~4e-5; a bf16 keeps ~2e-3). No clamps:
// the softmaxes' arguments are <= 0 or small (very negative ones scale to 0); masked lanes are
// discarded.
inline __m512 exp512_for_bf16(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 y = _mm512_set1_ps(1.f / 24);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(y, n);
}

}  // namespace
}  // namespace pqv
