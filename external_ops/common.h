// Shared helpers for the paddle-qwenvl CPU kernels: CPU feature checks, threading, bf16.
#pragma once
#include <omp.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "paddle/extension.h"

namespace pqv {

// Asks for 2 MB pages over the 2 MB-aligned inside of [p, p + bytes), before it is first written
// (the kernel's THP mode is "madvise" here): a few hundred page faults per GB instead of 262,144.
// A refusal only costs speed.
inline void advise_huge_pages(void* p, int64_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// PADDLE_QWENVL_KERNELS=portable forces the portable loops (kernels_portable.cc) on any CPU, so
// the path an older CPU takes can be tested here; unset (or "auto") picks by CPU features.
// Read at the first op call; the Python side rejects other values (ops/_build.py).
inline bool portable_forced() {
  const char* v = std::getenv("PADDLE_QWENVL_KERNELS");
  return v != nullptr && std::strcmp(v, "portable") == 0;
}

// True when the AVX512 (F/BW/VL/VNNI) kernels run: this CPU has them and they are not switched
// off. Checked at run time, so the library still loads and falls back on older CPUs.
inline bool has_avx512() {
  static const bool ok = !portable_forced() && __builtin_cpu_supports("avx512f") &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512vnni");
  return ok;
}

// True when this CPU computes in bf16 natively (AVX512-BF16; AMX CPUs have it too): oneDNN's bf16
// GEMM then runs ~2.3x its fp32 GEMM here (AMX and AVX512-BF16 alike); without it oneDNN would
// emulate bf16. Off under PADDLE_QWENVL_KERNELS=portable, like the other AVX512 paths.
inline bool has_fast_bf16() {
  static const bool ok = has_avx512() && __builtin_cpu_supports("avx512bf16");
  return ok;
}

// Threads for one op call: the Python knob passes num_threads; <= 0 means "all OpenMP threads".
inline int threads(int64_t num_threads) {
  return num_threads > 0 ? static_cast<int>(num_threads) : omp_get_max_threads();
}

// Work (bytes an op streams, or multiply-adds for a GEMM, whichever is larger) that each thread
// must get before another thread pays for waking it. Measured here (scripts/thread_threshold.py,
// 2 cores): idle, 2 threads break even at ~0.1-0.25 MB; with the other core busy, waking the
// second thread costs 0.1-1.5 ms and 2 threads break even only at ~6-14 MB. 1 MB per thread
// keeps small models (hidden 256: every decode op) on one thread and real-size GEMVs (several MB)
// parallel. PADDLE_QWENVL_WORK_PER_THREAD=<units> overrides it (0: always the requested count).
inline int64_t work_per_thread() {
  static const int64_t units = [] {
    const char* v = std::getenv("PADDLE_QWENVL_WORK_PER_THREAD");
    return v != nullptr && *v != '\0' ? std::atoll(v) : int64_t(1) << 20;
  }();
  return units;
}

// Threads for one op call of `work` units: the requested count, but at most one thread per
// work_per_thread() units, and at least one.
inline int threads_for(int64_t num_threads, int64_t work) {
  const int requested = threads(num_threads);
  const int64_t per = work_per_thread();
  if (per <= 0) return requested;
  const int64_t by_work = work / per;
  return static_cast<int>(by_work < 1 ? 1 : (by_work < requested ? by_work : requested));
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

// x (n floats) rounded to bf16, threads over nt.
inline std::vector<uint16_t> to_bf16(const float* x, int64_t n, int nt) {
  std::vector<uint16_t> out(n);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
  return out;
}

// [begin, end) of the items that worker `t` of `nt` handles, in contiguous chunks.
inline void split_range(int64_t n, int t, int nt, int64_t* begin, int64_t* end) {
  int64_t per = n / nt, rem = n % nt;
  *begin = t * per + (t < rem ? t : rem);
  *end = *begin + per + (t < rem ? 1 : 0);
}

// fn(b, e) over contiguous ranges [b, e) of [0, n), one per thread (GEMV weight rows).
template <typename F>
void parallel_rows(int64_t n, int nt, F fn) {
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
    if (b < e) fn(b, e);
  }
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

// Sets the OpenMP thread count for one scope. oneDNN takes its thread count from the caller's
// OpenMP setting (Paddle's libiomp5, which Paddle pins to 1) both when a primitive is created
// (brgemm fixes its work split then) and when it runs.
struct OmpThreads {
  int saved;
  explicit OmpThreads(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};

#define PQV_CHECK(cond, msg) PD_CHECK(cond, msg)

}  // namespace pqv
