// Shared helpers for the paddle-qwenvl CPU kernels: CPU feature checks, threading, bf16.
#pragma once
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "paddle/extension.h"

namespace pqv {

// True when this CPU runs the AVX512 (F/BW/VL/VNNI) kernels; checked at run time so the
// library still loads and falls back to scalar loops on older CPUs.
inline bool has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok;
}

// Threads for one op call: the Python knob passes num_threads; <= 0 means "all OpenMP threads".
inline int threads(int64_t num_threads) {
  return num_threads > 0 ? static_cast<int>(num_threads) : omp_get_max_threads();
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as oneDNN and Paddle's cast do.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// [begin, end) of the items that worker `t` of `nt` handles, in contiguous chunks.
inline void split_range(int64_t n, int t, int nt, int64_t* begin, int64_t* end) {
  int64_t per = n / nt, rem = n % nt;
  *begin = t * per + (t < rem ? t : rem);
  *end = *begin + per + (t < rem ? 1 : 0);
}

// fn(i) for i in [0, n), handed out one at a time to nt threads (items of uneven cost).
// Not `omp for schedule(dynamic)`: GCC's GOMP dynamic-loop entry points, served by Paddle's
// libiomp5, skipped iterations here (outputs left unwritten on the first call).
template <typename F>
void parallel_dynamic(int64_t n, int nt, F fn) {
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
}

#define PQV_CHECK(cond, msg) PD_CHECK(cond, msg)

}  // namespace pqv
