// The compute probe's loops (dot_peak_avx512.cc; callers check pqv::Exec::avx512() / fast_bf16() first):
// `iters` rounds of kDotChains independent dot-product instructions on registers only, no memory.
#pragma once
#include <cstdint>

namespace pqv {

constexpr int kDotChains = 12;   // independent accumulators: more than latency x throughput

int32_t vnni_dots_avx512(int64_t iters);   // vpdpbusd: 64 int8 multiply-adds each
float bf16_dots_avx512(int64_t iters);     // vdpbf16ps: 32 bf16 multiply-adds each

}  // namespace pqv
