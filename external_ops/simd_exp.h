// exp on AVX512 vectors for the kernels compiled for AVX512 (kernels_avx512.cc, kernels_amx.cc):
// include only after their `#pragma GCC target`.
#pragma once
#include <immintrin.h>

namespace pqv {

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

}  // namespace pqv
