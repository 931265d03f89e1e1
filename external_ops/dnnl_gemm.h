// Dense GEMM through oneDNN's matmul primitive (Paddle's own libdnnl.so.3).
#pragma once
#include <cstdint>

namespace pqv {

enum class Dt { f32, bf16 };

// y (M, N, row stride ldy) = a (M, K) @ w^T (* col_scale) (+ bias), w (N, K) row-major (HF layout).
// a and w must have the same dtype (f32 x f32 or bf16 x bf16); y is f32 or bf16; bias and
// col_scale (one factor per output column, e.g. int8 weights' scales) f32, each optional.
struct Gemm {
  const void* a; const void* w; const float* bias; void* y;
  Dt in_dt, y_dt;
  int64_t M, N, K, ldy;
  const float* col_scale = nullptr;
};

// False when the library was built without oneDNN headers (callers then use their fallback).
bool dnnl_available();
bool dnnl_gemm(const Gemm& g, int num_threads);

}  // namespace pqv
