// Row kernels of the fused elementwise ops (row_kernels.h) on AVX512. The pragma makes the
// compiler emit AVX512 for this file only; callers check pqv::Exec::avx512() first. No Paddle
// headers here.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include <cmath>

#include "elementwise/row_kernels.h"
#include "simd_avx512.h"

namespace pqv {
namespace {

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

// Two passes over the row (it stays in L1): the mean, then the variance around it (no
// cancellation as in E[x^2] - E[x]^2), then the normalised, scaled and shifted row.
void layer_norm_avx512(const float* x, const float* w, const float* b, float* out, int64_t H, float eps) {
  __m512 a = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= H; i += 16) a = _mm512_add_ps(a, _mm512_loadu_ps(x + i));
  float sum = _mm512_reduce_add_ps(a);
  for (; i < H; ++i) sum += x[i];
  const float mean = sum / H;
  const __m512 mv = _mm512_set1_ps(mean);
  a = _mm512_setzero_ps();
  for (i = 0; i + 16 <= H; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
    a = _mm512_fmadd_ps(d, d, a);
  }
  float ss = _mm512_reduce_add_ps(a);
  for (; i < H; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(ss / H + eps);
  const __m512 iv = _mm512_set1_ps(inv);
  for (i = 0; i + 16 <= H; i += 16) {
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), iv);
    _mm512_storeu_ps(out + i, _mm512_fmadd_ps(d, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
  }
  for (; i < H; ++i) out[i] = (x[i] - mean) * inv * w[i] + b[i];
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

void quick_gelu_avx512(const float* x, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f), a = _mm512_set1_ps(-1.702f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i);
    _mm512_storeu_ps(out + i, _mm512_div_ps(xv, _mm512_add_ps(one, exp512(_mm512_mul_ps(a, xv)))));
  }
  for (; i < n; ++i) out[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
}

}  // namespace

const RowKernels kRowAvx512 = {rms_norm_avx512, add_rms_norm_avx512, silu_mul_avx512, quick_gelu_avx512,
                               layer_norm_avx512};

}  // namespace pqv
