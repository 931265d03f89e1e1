// pqv_read_sum: sums a large float32 buffer with all threads, each thread's part read as `streams`
// side-by-side streams (AVX512, read_sum_avx512.cc; the portable loop reads one).
// paddle_qwenvl/tools/timing.py (ReadProbe) times it to measure the DRAM read bandwidth that the
// memory-bound kernels are judged against.
// Attrs: streams, then num_threads, work_per_thread, portable (common.h: pqv::Exec).
#include <vector>

#include "common.h"
#include "info/read_sum.h"

std::vector<paddle::Tensor> ReadSum(const paddle::Tensor& buf, int64_t streams, int64_t num_threads,
                                    int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(streams >= 1 && streams <= 16, "streams must be 1..16");
  const float* p = buf.data<float>();
  const int64_t n = buf.numel();
  const int nt = ex.threads_for(4 * n);
  const bool avx512 = ex.avx512();
  std::vector<float> part(nt, 0.f);
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    const int t = omp_get_thread_num();
    pqv::split_range(n, t, omp_get_num_threads(), &b, &e);
    float s = 0.f;
    if (avx512) {
      s = pqv::sum_avx512(p + b, e - b, static_cast<int>(streams));
    } else {
      for (int64_t i = b; i < e; ++i) s += p[i];
    }
    part[t] = s;
  }
  auto out = paddle::empty({1}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  float total = 0.f;
  for (float s : part) total += s;
  out.data<float>()[0] = total;
  return {out};
}

PD_BUILD_OP(pqv_read_sum)
    .Inputs({"buf"})
    .Outputs({"out"})
    .Attrs({"streams: int64_t", "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(ReadSum));
