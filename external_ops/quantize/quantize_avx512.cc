// The weight quantizers' inner loops (quantize_kernels.h) on AVX512F: the same operations in the
// same order as the portable loops in quantize_ops.cc (lane j of an error sum holds its part[j]),
// so the same results bit for bit. Compiled for AVX512F only (no other extension: the same
// instructions, hence the same roundings, as before); callers check pqv::Exec::avx512() first.
// (The portable loops stay scalar, because of their clamps: a 2B model's int4 quantization took
// ~25 s on them.)
// No Paddle headers here.
#pragma GCC target("avx512f")
#include <immintrin.h>

#include "quantize/quantize_kernels.h"

namespace pqv {
namespace {

inline __m512 levels16(__m512 v) {     // level(v), v = x / s or x * (1 / s)
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-9.f)), _mm512_set1_ps(8.f));
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512 r = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
  return _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-8.f)), _mm512_set1_ps(7.f));
}

}  // namespace

// group_error (quantize_ops.cc) on n (a multiple of 16) weights.
float group_error_avx512(const float* x, int64_t n, float s) {
  const __m512 vs = _mm512_set1_ps(s), inv = _mm512_set1_ps(1.f / s);
  __m512 part = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i);
    const __m512 d = _mm512_sub_ps(_mm512_mul_ps(levels16(_mm512_mul_ps(xv, inv)), vs), xv);
    part = _mm512_add_ps(part, _mm512_mul_ps(d, d));
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, part);
  float err = 0.f;
  for (float p : lanes) err += p;
  return err;
}

// max |x[i]| over n (a multiple of 16) weights.
float group_amax_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  return _mm512_reduce_max_ps(m);
}

// out[i] = level(x[i] / s) + 8 for n (a multiple of 16) weights (quantize_ops.cc: level)
void group_levels_avx512(const float* x, int64_t n, float s, float* out) {
  const __m512 vs = _mm512_set1_ps(s), eight = _mm512_set1_ps(8.f);
  for (int64_t i = 0; i < n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_add_ps(levels16(_mm512_div_ps(_mm512_loadu_ps(x + i), vs)), eight));
}

// The quantize loop of quantize_row_int8 (quantize_ops.cc), 16 weights at a time with the same operations
// (so the same bytes); returns how many weights it did (a multiple of 16). The scalar loop was
// most of an int8 load's time (~2.5 s of a 2B model).
int64_t quantize_int8_avx512(const float* w, int64_t K, float s, int8_t* q) {
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  const __m512 magic = _mm512_set1_ps(12582912.f);
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_loadu_ps(w + k), vs), lo), hi);
    const __m512i r = _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_add_ps(v, magic), magic));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtepi32_epi8(r));
  }
  return k;
}

}  // namespace pqv
