// Row kernels of the fused elementwise ops (row_kernels.h) for any x86-64 CPU.
#include <cmath>

#include "elementwise/row_kernels.h"

namespace pqv {

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

static void layer_norm_portable(const float* x, const float* w, const float* b, float* out, int64_t H, float eps) {
  float sum = 0.f, ss = 0.f;
  for (int64_t i = 0; i < H; ++i) sum += x[i];
  const float mean = sum / H;
  for (int64_t i = 0; i < H; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(ss / H + eps);
  for (int64_t i = 0; i < H; ++i) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

const RowKernels kRowPortable = {rms_norm_portable, add_rms_norm_portable, silu_mul_portable, quick_gelu_portable,
                                 layer_norm_portable};

}  // namespace pqv
