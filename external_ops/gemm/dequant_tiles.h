// Weight-only prefill tiles in bf16 for oneDNN's bf16 GEMM (tiles_bf16.cc, compiled for
// AVX512-BF16; callers check pqv::Exec::fast_bf16()): one weight row to K bf16 values. int8: q
// itself, exact (the caller applies the per-channel scale to the GEMM's output); int4
// (K % 32 == 0): (q - 8) * its group's scale, rounded to nearest even. No Paddle headers: this is
// included after tiles_bf16.cc's target pragma.
#pragma once
#include <cstdint>

namespace pqv {

void int8_row_bf16(const int8_t* w, int64_t K, uint16_t* out);
void int4_row_bf16(const uint8_t* w, const float* scales, int64_t K, int64_t group, uint16_t* out);

}  // namespace pqv
