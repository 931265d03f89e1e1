// Shared helpers of the op files (the files that register or run Paddle ops; the instruction-set
// kernel files include only their folder's Paddle-free header, after their target pragma): the
// attrs every op ends with (Exec), CPU feature checks, threading, bf16 conversions.
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

// Whether this CPU has the AVX512 (F/BW/VL/VNNI) kernels' instructions. Checked at run time, so
// the library still loads and falls back on older CPUs.
inline bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok;
}

// Whether this CPU computes in bf16 natively (AVX512-BF16; AMX CPUs have it too): oneDNN's bf16
// GEMM then runs ~2.3x its fp32 GEMM here (AMX and AVX512-BF16 alike); without it oneDNN would
// emulate bf16.
inline bool cpu_has_fast_bf16() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return ok;
}

// How one op call runs: the three attrs every op ends with, in this order, which its Python wrapper
// fills from paddle_qwenvl/settings.py (ops/_build.py exec_attrs):
//   num_threads: int64_t      threads asked for (PADDLE_QWENVL_NUM_THREADS, the CLI's --threads);
//                             <= 0: all OpenMP threads
//   work_per_thread: int64_t  work (bytes an op streams, or multiply-adds for a GEMM, whichever is
//                             larger) each thread must get before another thread pays for waking
//                             it; <= 0: always num_threads (PADDLE_QWENVL_WORK_PER_THREAD)
//   portable: bool            run the portable loops even on an AVX512 CPU, the path an older CPU
//                             takes (PADDLE_QWENVL_KERNELS=portable)
// Why 1 MiB of work per thread (the Python default): measured here (scripts/thread_threshold.py, 2
// cores), idle, 2 threads break even at ~0.1-0.25 MB; with the other core busy, waking the second
// thread costs 0.1-1.5 ms and 2 threads break even only at ~6-14 MB. 1 MB per thread keeps small
// models (hidden 256: every decode op) on one thread and real-size GEMVs (several MB) parallel.
struct Exec {
  int64_t num_threads, work_per_thread;
  bool portable;

  // The AVX512 (F/BW/VL/VNNI) kernels run: this CPU has them and they are not switched off.
  bool avx512() const { return !portable && cpu_has_avx512(); }
  // bf16 computes natively (oneDNN's bf16 GEMMs, our bf16 tiles); off with the portable loops too.
  bool fast_bf16() const { return !portable && cpu_has_fast_bf16(); }
  int threads() const { return num_threads > 0 ? static_cast<int>(num_threads) : omp_get_max_threads(); }
  // Threads for `work` units: `requested` (default: threads()), but at most one thread per
  // work_per_thread units, and at least one.
  int threads_for(int64_t work, int requested = 0) const {
    if (requested <= 0) requested = threads();
    if (work_per_thread <= 0) return requested;
    const int64_t by_work = work / work_per_thread;
    return static_cast<int>(by_work < 1 ? 1 : (by_work < requested ? by_work : requested));
  }
};

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
