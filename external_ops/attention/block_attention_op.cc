// pqv_block_attention: non-causal attention within blocks of tokens (the vision towers: one block
// per frame, or per window) on oneDNN GEMMs, or with `amx` on the fused AMX kernel
// (gemm_attention.cc). The wrapper's dispatcher (ops/block_attention.py, block_attention_path)
// picks this op or the paged kernel, and bf16 / amx; this op checks that the CPU can do what it
// is asked (an error otherwise, never a silent other path).
// Attrs: scale; bf16 (q, k, v and the softmax numerators in bf16, sums in fp32); amx; then
// num_threads, work_per_thread, portable (common.h: pqv::Exec).
#include <vector>

#include "attention/gemm_attention.h"
#include "common.h"

std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                                           const paddle::Tensor& cu_seqlens, float scale, bool bf16, bool amx,
                                           int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(pqv::gemm_attention_built(), "pqv_block_attention needs a build with oneDNN headers");
  PD_CHECK(q.dtype() == paddle::DataType::FLOAT32 && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
           "pqv_block_attention takes float32 q, k, v");
  PD_CHECK(q.shape().size() == 3 && k.shape() == q.shape() && v.shape() == q.shape(), "q, k, v must be (N, H, D)");
  PD_CHECK(cu_seqlens.dtype() == paddle::DataType::INT64, "cu_seqlens must be int64");
  PD_CHECK(!bf16 || ex.fast_bf16(), "bf16 block attention needs a CPU with AVX512-BF16 (and portable=false)");
  const int64_t N = q.shape()[0], H = q.shape()[1], D = q.shape()[2];
  const int64_t* cu = cu_seqlens.data<int64_t>();
  const int64_t nb = cu_seqlens.numel() - 1;
  PD_CHECK(nb >= 0 && cu[0] == 0 && cu[nb] == N, "cu_seqlens must rise from 0 to N");
  std::vector<pqv::Span> spans;
  for (int64_t b = 0; b < nb; ++b) {
    PD_CHECK(cu[b + 1] >= cu[b], "cu_seqlens must not decrease");
    spans.push_back({cu[b], cu[b + 1] - cu[b]});
  }
  auto out = paddle::empty({N, H, D}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  const pqv::GemmAttention a{q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(), N, H, H, D,
                             scale, /*causal=*/false, bf16, amx};
  pqv::gemm_attention(a, spans, ex);
  return {out};
}

std::vector<std::vector<int64_t>> BlockAttentionShape(const std::vector<int64_t>& q, const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {q};
}

std::vector<paddle::DataType> BlockAttentionDtype(const paddle::DataType&, const paddle::DataType&,
                                                  const paddle::DataType&, const paddle::DataType&) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(pqv_block_attention)
    .Inputs({"q", "k", "v", "cu_seqlens"})
    .Outputs({"out"})
    .Attrs({"scale: float", "bf16: bool", "amx: bool", "num_threads: int64_t", "work_per_thread: int64_t",
            "portable: bool"})
    .SetKernelFn(PD_KERNEL(BlockAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(BlockAttentionShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BlockAttentionDtype));
