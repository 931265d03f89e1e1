// pqv_build_info(any, portable) -> int32 (4,): what this build can do on this CPU under the kernel
// choice `portable` (PADDLE_QWENVL_KERNELS=portable: no AVX512, so no native bf16 and no AMX
// either): [AVX512+VNNI kernels, oneDNN, native bf16, AMX attention (attention/block_amx.cc)].
// The input is ignored (ops need one). ops/_build.py build_info() reads it once per process.
#include <vector>

#include "attention/attention_kernels.h"
#include "common.h"
#include "gemm/dnnl_gemm.h"

std::vector<paddle::Tensor> BuildInfo(const paddle::Tensor&, bool portable) {
  const pqv::Exec ex{1, 0, portable};
  auto out = paddle::empty({4}, paddle::DataType::INT32, paddle::CPUPlace());
  out.data<int32_t>()[0] = ex.avx512();
  out.data<int32_t>()[1] = pqv::dnnl_available();
  out.data<int32_t>()[2] = ex.fast_bf16();
  out.data<int32_t>()[3] = ex.fast_bf16() && pqv::amx_ready();
  return {out};
}

PD_BUILD_OP(pqv_build_info)
    .Inputs({"any"})
    .Outputs({"info"})
    .Attrs({"portable: bool"})
    .SetKernelFn(PD_KERNEL(BuildInfo));
