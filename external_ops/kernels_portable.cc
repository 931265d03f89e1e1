// Portable (any x86-64 / any compiler-vectorised) variants of the kernels in kernels.h.
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

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

// The portable attention kernels ignore the prefetch hint. K / V rows: float, or bf16 bits widened.
static float row_value(const float* row, int64_t d) { return row[d]; }
static float row_value(const uint16_t* row, int64_t d) {
  const uint32_t u = uint32_t(row[d]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T>
static void scores_portable(const float* q, int64_t R, const T* const* k, int64_t n, int64_t D, float* s,
                            int64_t lds, const T* const*) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t d = 0; d < D; ++d) acc += q[r * D + d] * row_value(k[j], d);
      s[r * lds + j] = acc;
    }
}

template <typename T>
static void accumulate_portable(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, int64_t R,
                                const T* const* v, int64_t n, int64_t D, const T* const*) {
  for (int64_t r = 0; r < R; ++r) {
    float* a = acc + r * D;
    for (int64_t d = 0; d < D; ++d) a[d] *= alpha[r];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t d = 0; d < D; ++d) a[d] += p[r * pr + j * pj] * row_value(v[j], d);
  }
}

template <typename T>
static void scores_t_portable(const float* qt, int64_t Rp, const T* const* k, int64_t n, int64_t D, float* st) {
  for (int64_t j = 0; j < n; ++j) {
    float* row = st + j * Rp;
    std::fill(row, row + Rp, 0.f);
    for (int64_t d = 0; d < D; ++d)
      for (int64_t r = 0; r < Rp; ++r) row[r] += row_value(k[j], d) * qt[d * Rp + r];
  }
}

static void softmax_t_portable(float* st, int64_t n, int64_t Rp, const int32_t* valid, float* m, float* l,
                               float* alpha) {
  for (int64_t r = 0; r < Rp; ++r) {
    float new_m = m[r], sum = 0.f;
    for (int64_t j = 0; j < valid[r]; ++j) new_m = std::max(new_m, st[j * Rp + r]);
    const float base = std::isinf(new_m) ? 0.f : new_m;          // nothing seen yet: keep exp finite
    for (int64_t j = 0; j < n; ++j) sum += (st[j * Rp + r] = j < valid[r] ? std::exp(st[j * Rp + r] - base) : 0.f);
    alpha[r] = std::exp(m[r] - base);
    l[r] = l[r] * alpha[r] + sum;
    m[r] = new_m;
  }
}

static float softmax_step_portable(float* s, int64_t n, float* m, float* l) {
  float new_m = *m, sum = 0.f;
  for (int64_t j = 0; j < n; ++j) new_m = std::max(new_m, s[j]);
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - new_m));
  const float alpha = std::exp(*m - new_m);
  *l = *l * alpha + sum;
  *m = new_m;
  return alpha;
}

static void rms_norm_portable(const float* x, const float* w, float* out, int64_t H, float eps) {
  float ss = 0.f;
  for (int64_t i = 0; i < H; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / H + eps);
  for (int64_t i = 0; i < H; ++i) out[i] = x[i] * inv * w[i];
}

static void add_rms_norm_portable(const float* x, const float* res, const float* w, float* out, float* res_out,
                                  int64_t H, float eps) {
  for (int64_t i = 0; i < H; ++i) res_out[i] = x[i] + res[i];
  rms_norm_portable(res_out, w, out, H, eps);
}

static void silu_mul_portable(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

static void quick_gelu_portable(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
}

static float softmax_row_portable(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb) {
  float mx = *m, sum = 0.f;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  *m = mx;
  for (int64_t j = 0; j < n; ++j) {
    const float e = std::exp(scale * s[j] - scale * mx);
    sum += e;
    if (p) {
      p[j] = e;
    } else {
      uint32_t u;
      std::memcpy(&u, &e, 4);
      pb[j] = static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }
  }
  return sum;
}

static void layer_norm_portable(const float* x, const float* w, const float* b, float* out, int64_t H, float eps) {
  float sum = 0.f, ss = 0.f;
  for (int64_t i = 0; i < H; ++i) sum += x[i];
  const float mean = sum / H;
  for (int64_t i = 0; i < H; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(ss / H + eps);
  for (int64_t i = 0; i < H; ++i) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

const RowKernels kRowPortable = {rms_norm_portable, add_rms_norm_portable, silu_mul_portable, quick_gelu_portable,
                                 softmax_row_portable, layer_norm_portable};

const AttnKernels kAttnPortable = {scores_portable<float>, softmax_step_portable, scores_t_portable<float>,
                                   softmax_t_portable, accumulate_portable<float>};
const AttnKernelsBf16 kAttnPortableBf16 = {scores_portable<uint16_t>, softmax_step_portable,
                                           scores_t_portable<uint16_t>, softmax_t_portable,
                                           accumulate_portable<uint16_t>};

}  // namespace pqv
