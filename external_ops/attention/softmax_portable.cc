// The GEMM attention engine's row softmax (attention_kernels.h: softmax_row_portable) for any
// x86-64 CPU.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/attention_kernels.h"

namespace pqv {

float softmax_row_portable(const float* s, int64_t n, float scale, float* m, float* p, uint16_t* pb) {
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

}  // namespace pqv
