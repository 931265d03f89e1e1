// The weight quantizers' AVX512F loops (quantize_avx512.cc; callers check pqv::Exec::avx512()
// first), each the same operations in the same order as its portable loop in quantize_ops.cc, so
// the same results bit for bit. No Paddle headers here.
#pragma once
#include <cstdint>

namespace pqv {

float group_error_avx512(const float* x, int64_t n, float s);
float group_amax_avx512(const float* x, int64_t n);
void group_levels_avx512(const float* x, int64_t n, float s, float* out);
int64_t quantize_int8_avx512(const float* w, int64_t K, float s, int8_t* q);

}  // namespace pqv
