// pqv_dot_peak: the compute probe. Every thread runs `iters` rounds of kDotChains independent
// dot-product instructions on registers (dot_peak_avx512.cc): kind 0 = vpdpbusd (int8, 64
// multiply-adds each, the VNNI kernels' instruction), 1 = vdpbf16ps (bf16, 32 each).
// paddle_qwenvl/tools/timing.py (DotPeak) times it: the multiply-add rate this CPU gives the
// compute-bound kernels now (it moves with the clock and the neighbours, as DRAM bandwidth does).
// x: any tensor (an op needs an input); out: (threads, 2) float64, per thread the loop's result
// (kept so no loop is dropped) and the number of dot-product instructions it ran.
// Attrs: kind, iters, then num_threads, work_per_thread, portable (common.h: pqv::Exec).
#include <vector>

#include "common.h"
#include "info/dot_peak.h"

std::vector<paddle::Tensor> DotPeak(const paddle::Tensor& x, int64_t kind, int64_t iters, int64_t num_threads,
                                    int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(kind == 0 || kind == 1, "kind must be 0 (int8 vpdpbusd) or 1 (bf16 vdpbf16ps)");
  PD_CHECK(kind == 0 ? ex.avx512() : ex.fast_bf16(), "this CPU (or the portable setting) has no ",
           kind == 0 ? "AVX512-VNNI" : "AVX512-BF16", " to probe");
  PD_CHECK(iters > 0, "iters must be positive");
  const int nt = ex.threads();
  auto out = paddle::empty({nt, 2}, paddle::DataType::FLOAT64, paddle::CPUPlace());
  double* result = out.data<double>();
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    result[2 * t] = kind == 0 ? pqv::vnni_dots_avx512(iters) : pqv::bf16_dots_avx512(iters);
    result[2 * t + 1] = static_cast<double>(iters) * pqv::kDotChains;
  }
  return {out};
}

PD_BUILD_OP(pqv_dot_peak)
    .Inputs({"x"})
    .Outputs({"out"})
    .Attrs({"kind: int64_t", "iters: int64_t", "num_threads: int64_t", "work_per_thread: int64_t",
            "portable: bool"})
    .SetKernelFn(PD_KERNEL(DotPeak));
