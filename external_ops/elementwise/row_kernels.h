// Row kernels for the fused elementwise ops (elementwise_ops.cc), one row of H or n floats per call.
// Per instruction set: rows_avx512.cc (compiled for AVX512 by a pragma; callers check
// pqv::Exec::avx512() first) and rows_portable.cc. No Paddle headers here.
#pragma once
#include <cstdint>

namespace pqv {

// rms_norm:     out = x / sqrt(mean(x^2) + eps) * w
// add_rms_norm: res_out = x + res; out = rms_norm(res_out)
// silu_mul:     out = silu(g) * u
// quick_gelu:   out = x * sigmoid(1.702 x)   (Qwen2-VL's vision MLP)
// layer_norm:   out = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (Qwen2-VL's vision blocks)
struct RowKernels {
  void (*rms_norm)(const float* x, const float* w, float* out, int64_t H, float eps);
  void (*add_rms_norm)(const float* x, const float* res, const float* w, float* out, float* res_out, int64_t H,
                       float eps);
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  void (*quick_gelu)(const float* x, float* out, int64_t n);
  void (*layer_norm)(const float* x, const float* w, const float* b, float* out, int64_t H, float eps);
};
extern const RowKernels kRowAvx512;
extern const RowKernels kRowPortable;

}  // namespace pqv
