// Weight-only int8 / int4 decode GEMVs (gemv.h) for any x86-64 CPU (compiler-vectorised loops),
// and the int4 activation layout the AVX512 exact path wants (int4_prepare).
#include <cstdint>

#include "gemv/gemv.h"

namespace pqv {

void int8_gemv_portable(const Int8Gemv& p, int64_t n0, int64_t n1) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      const float* x = p.x + m * p.K;
      const int8_t* w = p.w + n * p.K;
      float s = 0.f;
      for (int64_t k = 0; k < p.K; ++k) s += x[k] * static_cast<float>(w[k]);
      p.y[m * p.N + n] = s * p.scales[n] + (p.bias ? p.bias[n] : 0.f);
    }
}

// One group of 'group' weights of row n against x; nibbles stored as q+8.
static float int4_group_dot(const float* x, const uint8_t* w, int64_t group) {
  float s = 0.f;
  for (int64_t j = 0; j < group / 2; ++j) {
    s += x[2 * j] * static_cast<float>((w[j] & 0x0F) - 8);
    s += x[2 * j + 1] * static_cast<float>((w[j] >> 4) - 8);
  }
  return s;
}

void int4_gemv_portable(const Int4Gemv& p, int64_t n0, int64_t n1) {
  const int64_t G = p.K / p.group;
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      float s = 0.f;
      for (int64_t g = 0; g < G; ++g)
        s += p.scales[n * G + g] *
             int4_group_dot(p.x + m * p.K + g * p.group, p.w + n * (p.K / 2) + g * p.group / 2, p.group);
      p.y[m * p.N + n] = s + (p.bias ? p.bias[n] : 0.f);
    }
}

void int4_prepare(const float* x, int64_t M, int64_t K, int64_t group, float* xp, float* xsum) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    float* pr = xp + m * K;
    for (int64_t c = 0; c < K; c += 64)
      for (int64_t i = 0; i < 32; ++i) {
        pr[c + i] = xr[c + 2 * i];
        pr[c + 32 + i] = xr[c + 2 * i + 1];
      }
    for (int64_t g = 0; g < K / group; ++g) {
      float s = 0.f;
      for (int64_t k = 0; k < group; ++k) s += xr[g * group + k];
      xsum[m * (K / group) + g] = s;
    }
  }
}

}  // namespace pqv
