// Dense GEMM through oneDNN's matmul primitive (Paddle's own libdnnl.so.3).
#pragma once
#include <cstdint>

namespace pqv {

enum class Dt { f32, bf16 };

// y (M, N, row stride ldy) = a (M, K) @ w^T (* col_scale) (+ bias), w (N, K) row-major (HF layout).
// a and w have the same dtype (f32 x f32 or bf16 x bf16), except that w_int8 = true takes w as
// int8 values which oneDNN converts to bf16 inside the GEMM ("weight decompression"; a bf16 only;
// exact, since bf16 holds every int8). y is f32 or bf16; bias and col_scale (one factor per output
// column, e.g. int8 weights' scales) f32, each optional.
struct Gemm {
  const void* a; const void* w; const float* bias; void* y;
  Dt in_dt, y_dt;
  int64_t M, N, K, ldy;
  const float* col_scale = nullptr;
  bool w_int8 = false;
};

// False when the library was built without oneDNN headers, or when w_int8 is asked of a oneDNN
// that has no such GEMM on this CPU (callers then use their fallback). Other failures throw.
bool dnnl_available();
bool dnnl_gemm(const Gemm& g, int num_threads);

}  // namespace pqv
