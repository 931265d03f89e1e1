// The DRAM read-bandwidth probe's AVX512 loop (read_sum_avx512.cc; callers check
// pqv::Exec::avx512() first): the sum of all floats in [p, p + n), read as `streams` equal parts
// side by side.
#pragma once
#include <cstdint>

namespace pqv {

float sum_avx512(const float* p, int64_t n, int streams);

}  // namespace pqv
