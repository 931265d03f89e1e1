// pqv_block_attention: non-causal attention within blocks of tokens (the vision towers: one block
// per frame, or per window) on oneDNN GEMMs (gemm_attention.cc). Long blocks only: the wrapper
// (ops/block_attention.py) sends short windows to the paged kernel.
#include <vector>

#include "common.h"
#include "gemm_attention.h"

std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                                           const paddle::Tensor& cu_seqlens, float scale, bool bf16,
                                           int64_t num_threads) {
  PD_CHECK(pqv::gemm_attention_built(), "pqv_block_attention needs a build with oneDNN headers");
  PD_CHECK(q.dtype() == paddle::DataType::FLOAT32 && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
           "pqv_block_attention takes float32 q, k, v");
  PD_CHECK(q.shape().size() == 3 && k.shape() == q.shape() && v.shape() == q.shape(), "q, k, v must be (N, H, D)");
  PD_CHECK(cu_seqlens.dtype() == paddle::DataType::INT64, "cu_seqlens must be int64");
  PD_CHECK(!bf16 || pqv::has_fast_bf16(), "bf16 block attention needs a CPU with AVX512-BF16");
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
                             scale, /*causal=*/false, bf16};
  pqv::gemm_attention(a, spans, pqv::threads_for(num_threads, pqv::gemm_attention_macs(a, spans)));
  return {out};
}

std::vector<std::vector<int64_t>> BlockAttentionShape(const std::vector<int64_t>& q, const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {q};
}

PD_BUILD_OP(pqv_block_attention)
    .Inputs({"q", "k", "v", "cu_seqlens"})
    .Outputs({"out"})
    .Attrs({"scale: float", "bf16: bool", "num_threads: int64_t"})
    .SetKernelFn(PD_KERNEL(BlockAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(BlockAttentionShape));
