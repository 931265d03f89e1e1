// The DRAM read-bandwidth probe's loop (read_sum.h) on AVX512. The pragma makes the compiler emit
// AVX512 for this file only; callers check pqv::Exec::avx512() first. No Paddle headers here.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "info/read_sum.h"
#include "simd_avx512.h"

namespace pqv {

float sum_avx512(const float* p, int64_t n, int streams) {
  // `streams` equal parts read side by side, each prefetched 1 KB ahead when there are several:
  // more misses in flight than one sequential stream gets from the hardware prefetcher (on an
  // Intel Xeon, 2 threads: 1 stream ~20 GB/s, 4 streams + prefetch ~29-31).
  __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  const int64_t per = n / streams / 64 * 64;
  for (int64_t k = 0; k < per; k += 64)
    for (int s = 0; s < streams; ++s) {
      const float* q = p + s * per + k;
      if (streams > 1)
        for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(q + 256 + 16 * j), _MM_HINT_T0);
      for (int j = 0; j < 4; ++j) a[j] = _mm512_add_ps(a[j], _mm512_loadu_ps(q + 16 * j));
    }
  float s = reduce4(a);
  for (int64_t k = per * streams; k < n; ++k) s += p[k];
  return s;
}


}  // namespace pqv
